#!/usr/bin/env bash
# The main job, from a fresh Debian/Ubuntu machine: set up, make a local Python base
# image (registries may be unreachable), build the flagship example, call its pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
GB=.venv/bin/gardenbuild
BASE=$($GB -q base bootstrap --python 3.11 --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["image"])')
$GB build examples/solubility --base-image "$BASE"
echo "==> predict_solubility on ethanol, benzene, aspirin, caffeine (log mol/L):"
$GB run examples/solubility predict_solubility \
  --input '{"smiles": ["CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"]}'
