#!/usr/bin/env bash
# The compose demo's data, made from Fashion-MNIST on the host (the image holds none):
# docker/sites/site-00<i>/site-00<i>.npz, one directory per SuperNode (partition i of a
# 3-client Dirichlet(1.0) federation, as the simulation draws it), and docker/sites/server/
# with the central test file and the run config the `run` job passes to `flwr run`.
#   ROUNDS=2 bash docker/make-sites.sh      # the run's rounds (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
out=docker/sites
rm -rf "$out" && mkdir -p "$out/server"
.venv/bin/python -m scripts.make_sites --out "$out/all" --clients 3 partition.alpha=1.0 \
  data.train_subset=6000 data.test_subset=2000 partition.client_test_size=300
for i in 0 1 2; do
  mkdir -p "$out/site-00$i" && mv "$out/all/site-00$i.npz" "$out/site-00$i/"
done
mv "$out/all/test.npz" "$out/server/"
# the federation's keys, with the test file where the ServerApp's container sees it
sed "s|^data.test_path = .*|data.test_path = \"/server-data/test.npz\"|" "$out/all/sites.toml" \
  > "$out/server/run-config.toml"
printf 'rounds = %s\noutput.root = "/app/runs"\n' "${ROUNDS:-5}" >> "$out/server/run-config.toml"
rm -r "$out/all"
echo "make-sites: $(ls -d "$out"/site-* | tr '\n' ' ')and $out/server"
