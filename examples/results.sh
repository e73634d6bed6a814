#!/usr/bin/env bash
# Reproduces the rows of docs/results.md (CPU). Usage: bash examples/results.sh <row> [methods...]
# rows: horse_full horse_full_beta16 horse_full_tuned horse_30_tuned horse_clicks_tuned horse_30 horse_clicks grabcut_real grabcut_long camvid
# Every run uses --threads 1 (deterministic across machines; much faster on a shared CPU). Override: THREADS=n.
set -euo pipefail
row=$1; shift
methods=${*:-pce grid-tr grid-gd adm full}
common="--size 96 --width 8 --epochs 8 --warmup-epochs 8 --stage-a-every 2 --seed 0 --data-seed 0 --no-progress --threads ${THREADS:-1}"
extra=""
base=$row  # the row whose PCE warm-up checkpoint is shared
case $row in
  horse_full)   data="--dataset weizmann_horse --length 1.0 --limit 100" ;;
  horse_full_beta16) data="--dataset weizmann_horse --length 1.0 --limit 100"; extra="--trust-weight 16" ;;
  horse_full_tuned) data="--dataset weizmann_horse --length 1.0 --limit 100"; extra="--trust-weight 16 --error-prob 0.3"; base=horse_full ;;
  horse_30_tuned) data="--dataset weizmann_horse --length 0.3 --limit 100"; extra="--trust-weight 16 --error-prob 0.3"; base=horse_30 ;;
  horse_clicks_tuned) data="--dataset weizmann_horse --supervision clicks --limit 100"; extra="--trust-weight 16 --error-prob 0.3"; base=horse_clicks ;;
  horse_30)     data="--dataset weizmann_horse --length 0.3 --limit 100"; extra="--trust-weight 16" ;;
  horse_clicks) data="--dataset weizmann_horse --supervision clicks --limit 100"; extra="--trust-weight 16" ;;
  grabcut_real) data="--dataset grabcut --supervision real"; extra="--width 16" ;;
  grabcut_long) data="--dataset grabcut --supervision real"; extra="--width 16 --epochs 40 --warmup-epochs 40 --stage-a-every 10 --trust-weight 16" ;;
  camvid)       data="--dataset camvid --limit 120 --eval-limit 60"; extra="--trust-weight 16" ;;
  *) echo "unknown row $row"; exit 2 ;;
esac
for m in $methods; do
  python examples/segmentation_scribbles.py $data $common $extra --method "$m" \
    --out "runs/results/$row/$m" --warmup-checkpoint "runs/results/$base/warmup.pt" --overwrite
done
