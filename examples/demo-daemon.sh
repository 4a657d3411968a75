#!/usr/bin/env bash
# Second half of `make demo`: run the real daemon on the demo inbox, drop sample images, one
# study folder and one study video into it as a user would, wait until every one is logged and
# both studies have their report, stop it, and show the audit summary and the reports' paths.
# Usage: examples/demo-daemon.sh DEMO_DIR VENV_BIN
set -euo pipefail
demo=$1
bin=$2
config="$demo/config.toml"
audit_log="$demo/output/audit_log.csv"
samples="$demo/samples"

# Fresh images the models have never seen (another seed), named after their true class so
# that you can see at a glance whether each landed in the right folder.
"$bin/gicls-train" demo-data "$samples" --per-class 3 --size 96 --seed 2024 -c "$config" >/dev/null
# A study folder (a patient's exported frames) and a capsule video with a known time line of
# conditions (videos/synthetic_study_00.truth.json).
"$bin/gicls-train" demo-data "$demo/study_frames" --per-class 2 --size 96 --seed 2025 -c "$config" >/dev/null
"$bin/gicls-train" demo-data --video "$demo/videos" --frames 300 --size 96 --fps 4 --seed 2026 \
  -c "$config" >/dev/null
mkdir -p "$demo/inbox"

"$bin/gicls-daemon" run -c "$config" >"$demo/daemon.log" 2>&1 &
daemon=$!
trap 'kill -TERM "$daemon" 2>/dev/null || true' EXIT

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@"; do
    if ! kill -0 "$daemon" 2>/dev/null; then
      echo "the daemon stopped unexpectedly; see $demo/daemon.log" >&2; tail -5 "$demo/daemon.log" >&2
      exit 1
    fi
    if ((SECONDS >= deadline)); then echo "timed out waiting for $what" >&2; exit 1; fi
    sleep 0.5
  done
}
logged_rows() { [ -f "$audit_log" ] && echo $(($(wc -l <"$audit_log") - 1)) || echo 0; }
all_logged() { [ "$(logged_rows)" -ge "$expected" ]; }

# -s: the log is created by the background job, which may not have opened it yet.
wait_for 300 "the daemon to start" grep -qs daemon_ready "$demo/daemon.log"
echo "daemon ready; dropping sample images into $demo/inbox"
expected=0
for image in "$samples"/*/*.jpg; do
  class=$(basename "$(dirname "$image")")
  cp "$image" "$demo/inbox/${class// /_}_$(basename "$image")"
  expected=$((expected + 1))
done
folder_study=demo_patient_folder
video_study=demo_patient_video
mkdir -p "$demo/$folder_study"
for image in "$demo"/study_frames/*/*.jpg; do  # one flat folder, as a capsule export is
  class=$(basename "$(dirname "$image")")
  cp "$image" "$demo/$folder_study/frame_${class// /_}_$(basename "$image")"
done
cp -r "$demo/$folder_study" "$demo/inbox/"
expected=$((expected + $(find "$demo/$folder_study" -name '*.jpg' | wc -l)))
echo "dropping study folder $folder_study/ and study video $video_study.mp4"
cp "$demo/videos/synthetic_study_00.mp4" "$demo/inbox/$video_study.mp4"
expected=$((expected + 1))
wait_for 600 "$expected audit rows" all_logged
reports_written() { [ -f "$demo/output/$folder_study/report.html" ] && [ -f "$demo/output/$video_study/report.html" ]; }
wait_for 120 "both study reports" reports_written

kill -TERM "$daemon"
wait "$daemon"
trap - EXIT
echo
echo "Sorted folders ($demo/output):"
for folder in "$demo"/output/*/; do
  printf '  %-20s %s file(s)\n' "$(basename "$folder")" "$(find "$folder" -type f | wc -l)"
done
right=0
for folder in "$demo"/output/*/; do
  class=$(basename "$folder")
  right=$((right + $(find "$folder" -type f -name "${class// /_}_*" | wc -l)))
done
echo "  $right of $expected synthetic samples landed in the folder of their true class"
echo
"$bin/gicls-audit" summary -c "$config"
"$bin/gicls-audit" verify -c "$config"
echo
echo "Study reports (open in a browser):"
echo "  $demo/output/$folder_study/report.html"
echo "  $demo/output/$video_study/report.html  (key frames in $demo/output/$video_study/<Class>/,"
echo "   per-frame scores in $demo/output/$video_study/_frames/$video_study.parquet)"
[ -f "$demo/output/index.html" ] && echo "  index: $demo/output/index.html"
