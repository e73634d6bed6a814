#!/usr/bin/env bash
# The quality investigation of docs/results.md (validation split only): training seeds 0-2 of each
# variant, into runs/investigation/<row>_<variant>/<method>/seed<k>/ (read by examples/results_table.py).
# Usage: [SEEDS="0 1 2"] [METHODS="adm"] bash examples/investigate.sh <row> [variant...]; rows: demo horse_full
# Variants: restart (the official phase switch: fresh optimizer and schedule after the warm-up), continue
# (--phase-switch continue), and either with eps0.3 (--error-prob 0.3). Each variant runs pce and grid-tr
# (beta 16); the warm-up checkpoint is shared by the runs of one seed and phase switch.
set -euo pipefail
row=$1; shift
variants=${*:-restart continue restart_eps0.3 continue_eps0.3}
case $row in
  demo)       data="--demo --no-progress" ;;
  horse_full) data="--dataset weizmann_horse --length 1.0 --limit 100 --size 96 --width 8 --epochs 8 --warmup-epochs 8 --stage-a-every 2 --trust-weight 16 --no-progress --threads 1" ;;
  *) echo "unknown row $row"; exit 2 ;;
esac
for seed in ${SEEDS:-0 1 2}; do
  for v in $variants; do
    switch=${v%%_*}; extra="--phase-switch $switch"
    [[ $v == *_eps0.3 ]] && extra="$extra --error-prob 0.3"
    methods="grid-tr"; [[ $v != *_eps* ]] && methods="pce grid-tr"
    methods=${METHODS:-$methods}
    for m in $methods; do
      out="runs/investigation/${row}_$v/$m/seed$seed"
      [ -f "$out/final.json" ] && continue
      OMP_NUM_THREADS=1 python examples/segmentation_scribbles.py $data $extra --method "$m" --seed "$seed" \
        --out "$out" --warmup-checkpoint "runs/investigation/${row}_warmup/$switch-seed$seed.pt" --overwrite > /dev/null
    done
  done
done
