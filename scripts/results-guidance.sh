#!/usr/bin/env bash
# Every training run behind docs/results.md's guidance tables, in the order they were run:
# test splits of MSR Action3D and NW-UCLA (CTR-GCN and ST-GCN, 5 seeds, 50 exemplar draws), the
# ablation of the target recipe, then the rotated folds. Settings were chosen before this on
# the validation splits:
#   scripts/paired.sh configs/msr-cpu.toml runs/val-msr "0 1" "val0 val1 val2" scripts/settings/guidance.txt --set eval.draws=50
# Each stage prints its paired comparisons into runs/<stage>.md. Runs that finished are skipped,
# so the script can be restarted.
set -euo pipefail
cd "$(dirname "$0")/.."
p=scripts/paired.sh
d="--set eval.draws=50"
$p configs/msr-cpu.toml    runs/test-msr-ctrgcn    "0 1 2 3 4" test scripts/settings/test.txt $d > runs/test-msr-ctrgcn.md
$p configs/msr-cpu.toml    runs/test-msr-stgcn     "0 1 2 3 4" test scripts/settings/test-none.txt $d --set model.encoder.kind=st_gcn > runs/test-msr-stgcn.md
$p configs/nwucla-cpu.toml runs/test-nwucla-ctrgcn "0 1 2 3 4" test scripts/settings/test.txt $d > runs/test-nwucla-ctrgcn.md
$p configs/nwucla-cpu.toml runs/test-nwucla-stgcn  "0 1 2 3 4" test scripts/settings/test-none.txt $d --set model.encoder.kind=st_gcn > runs/test-nwucla-stgcn.md
$p configs/msr-cpu.toml    runs/ablation-msr       "0 1 2" test scripts/settings/ablation.txt $d > runs/ablation-msr.md
$p configs/msr-cpu.toml    runs/folds-msr          "0 1 2" "fold1 fold2 fold3" scripts/settings/test-none.txt $d > runs/folds-msr.md
$p configs/nwucla-cpu.toml runs/folds-nwucla       "0 1 2" "fold1" scripts/settings/test-none.txt $d > runs/folds-nwucla.md
# The classifier kind (issue item: MLP as the paper describes, cosine-margin), on validation splits.
$p configs/msr-cpu.toml    runs/val-msr            "0 1" "val0 val1 val2" scripts/settings/classifier.txt $d > runs/val-msr-classifier.md
