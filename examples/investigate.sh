#!/usr/bin/env bash
# The quality investigation of docs/results.md (validation split only): training seeds of each variant,
# into runs/investigation/<row>_<variant>/<method>/seed<k>/ (read by examples/results_table.py --metric val).
# Usage: [SEEDS="0 1 2"] [METHODS="pce grid-tr"] [ROOT=runs/investigation] bash examples/investigate.sh <row> [variant...]
# rows: demo horse_full horse_full160 horse_30 horse_clicks grabcut camvid isbi (horse_full160: the full-length row at 160 px)
# variants (each adds options to the row's; "long" = 24 + 24 epochs, stage A every 4):
#   restart continue restart_eps0.3 continue_eps0.3   the 8 + 8 runs of the first investigation
#   long long_auto long_every8 long_every2 long_width16 long_eps<e> long_learned long_continue long_soft long_mf long_densegd long_densegd<lambda> long_densetr
#   long_adm (ADM: hard CE on the stage-A labels), long_fixed (ADM on the first stage-A labels only, never re-solved)
#   demo only: w10 w20 (the demo's 10-epoch warm-up, or 20, its other settings), then grid-tr alone with options joined by _:
#     eps<e> (--error-prob), auto (--trust-weight auto), b<beta> (--trust-weight), e.g. w10_eps0.1_auto
#     (w10_eps0.4956: the demo before its error_prob 0.1, i.e. the CLI's 0.9912*(C-1)/C at C = 2);
#     method "warmup" = the PCE warm-up alone
#   long_sgd<lr> (SGD, momentum 0.9, weight decay 5e-4, at that learning rate: its own warm-ups and PCE)
#   long_lam<lambda> (stage A's Potts weight), long_gd<lambda> long_tv_gd<lambda>   Grid-GD with its own lambda (bilinear / tv relaxation), e.g. long_gd10
# One PCE warm-up per row, seed and warm-up schedule is shared by the runs that can use it.
set -euo pipefail
row=$1; shift
variants=${*:-restart continue restart_eps0.3 continue_eps0.3}
root=${ROOT:-runs/investigation}
common="--no-progress --threads 1 --trust-weight 16"
case $row in
  demo)         data="--demo --no-progress" ; common="" ;;
  horse_full)   data="--dataset weizmann_horse --length 1.0 --limit 100 --size 96 --width 8" ;;
  horse_full160) data="--dataset weizmann_horse --length 1.0 --limit 100 --size 160 --width 8" ;;
  horse_30)     data="--dataset weizmann_horse --length 0.3 --limit 100 --size 96 --width 8" ;;
  horse_clicks) data="--dataset weizmann_horse --supervision clicks --limit 100 --size 96 --width 8" ;;
  grabcut)      data="--dataset grabcut --supervision real --size 96 --width 16" ;;
  camvid)       data="--dataset camvid --limit 120 --eval-limit 60 --size 96 --width 8" ;;
  isbi)         data="--dataset isbi2012 --size 96 --width 8" ;;
  *) echo "unknown row $row"; exit 2 ;;
esac
short="--epochs 8 --warmup-epochs 8 --stage-a-every 2"
long="--epochs 24 --warmup-epochs 24 --stage-a-every 4"
for seed in ${SEEDS:-0 1 2}; do
  for v in $variants; do
    methods="pce grid-tr"
    case $v in
      restart|continue) extra="$short --phase-switch $v"; warm=$v ;;
      restart_eps0.3|continue_eps0.3) extra="$short --phase-switch ${v%%_*} --error-prob 0.3"; warm=${v%%_*}; methods="grid-tr" ;;
      long)          extra="$long"; warm=long; methods="pce grid-tr full" ;;
      w10|w20)       extra="--warmup-epochs ${v#w}"; warm=$v; methods="warmup pce grid-tr" ;;
      w??_*)         extra="--warmup-epochs ${v:1:2}"; warm=${v%%_*}; methods="grid-tr"  # w10_eps0.1_auto: each option
                     for o in $(tr _ ' ' <<< "${v#w??_}"); do
                       case $o in
                         eps*) extra="$extra --error-prob ${o#eps}" ;;
                         auto) extra="$extra --trust-weight auto" ;;
                         b*)   extra="$extra --trust-weight ${o#b}" ;;
                         *) echo "unknown option $o of $v"; exit 2 ;;
                       esac
                     done ;;
      long_auto)     extra="$long --trust-weight auto"; warm=long; methods="grid-tr" ;;
      long_every8)   extra="${long/--stage-a-every 4/--stage-a-every 8}"; warm=long; methods="grid-tr" ;;
      long_every2)   extra="${long/--stage-a-every 4/--stage-a-every 2}"; warm=long; methods="grid-tr" ;;
      long_eps*)     extra="$long --error-prob ${v#long_eps}"; warm=long; methods="grid-tr" ;;  # e.g. long_eps0.1
      long_adm)      extra="$long"; warm=long; methods="adm" ;;
      long_fixed)    extra="${long/--stage-a-every 4/--stage-a-every 1000}"; warm=long; methods="adm" ;;
      long_learned)  extra="$long --error-prob learned"; warm=long; methods="grid-tr" ;;
      long_sgd*)     extra="$long --optimizer sgd --lr ${v#long_sgd}"; warm=$v; methods="pce grid-tr" ;;
      long_width16)  extra="$long --width 16"; warm=long_width16; methods="pce grid-tr" ;;
      long_continue) extra="$long --phase-switch continue"; warm=long_continue; methods="pce grid-tr" ;;
      long_soft)     extra="$long --stage-a-solver mean-field --soft-targets"; warm=long; methods="grid-tr" ;;
      long_mf)       extra="$long --stage-a-solver mean-field"; warm=long; methods="grid-tr" ;;
      long_densegd)  extra="$long"; warm=long; methods="dense-gd" ;;  # the DenseCRF loss, its default lambda
      long_densegd*) extra="$long --dense-weight ${v#long_densegd}"; warm=long; methods="dense-gd" ;;  # its own lambda
      # Dense-TR with the lambda and beta of the best stage-A labels on horse's validation images (docs/performance.md)
      long_densetr)  extra="$long --dense-weight 0.3 --trust-weight 64"; warm=long; methods="dense-tr" ;;
      long_lam*)     extra="$long --potts-weight ${v#long_lam}"; warm=long; methods="grid-tr" ;;  # stage A's lambda
      long_gd*)      extra="$long --potts-weight ${v#long_gd}"; warm=long; methods="grid-gd" ;;  # Grid-GD's own lambda
      long_tv_gd*)   extra="$long --relaxation tv --potts-weight ${v#long_tv_gd}"; warm=long; methods="grid-gd" ;;
      *) echo "unknown variant $v"; exit 2 ;;
    esac
    for m in ${METHODS:-$methods}; do
      out="$root/${row}_$v/$m/seed$seed"
      [ -f "$out/final.json" ] && continue
      # full supervision ignores the seeds: on horse it is one run per seed and schedule, made in horse_full
      same="$root/horse_full_$v/full/seed$seed"
      if [[ $m == full && $row == horse_* && $row != horse_full && -f $same/final.json ]]; then
        mkdir -p "$(dirname "$out")" && cp -r "$same" "$out" && continue
      fi
      run=(--method "$m"); [[ $m == warmup ]] && run=(--method pce --epochs 0)  # the warm-up alone
      OMP_NUM_THREADS=1 python examples/segmentation_scribbles.py $data $common $extra "${run[@]}" --seed "$seed" \
        --out "$out" --warmup-checkpoint "$root/warmups/${row}_$warm-seed$seed.pt" --overwrite > /dev/null
    done
  done
done
