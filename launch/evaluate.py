"""Evaluates trained workdirs on a dataset's test images and writes the results table.

    python launch/evaluate.py --protocol=closed --output_dir=runs/synthetic/report \
        --embedding=runs/synthetic/embedding --psm_network=runs/synthetic/psm_network \
        --multi_task=runs/synthetic/multi_task --per_observer=runs/synthetic/per_observer \
        --universal=runs/synthetic/universal

The dataset and data_dir come from the workdirs' saved configs (all must agree). Writes
`<output_dir>/<protocol>.md` and `.json` and prints the table. Rows whose workdir is not given are
left out. Predicted PSM = clip(USM + discrepancy, 0.3 x USM, 1) (ours,
`psm_jax.evaluate.USM_FLOOR`); --usm_floor=0 scores the papers' clip(USM + discrepancy, 0, 1).
"""

from absl import app, flags

from psm_jax import evaluate
from psm_jax.train import checkpoint

_PROTOCOL = flags.DEFINE_enum("protocol", "closed", ["closed", "open"], "Observers to evaluate.")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Where the table goes.")
_M = flags.DEFINE_integer("m", 32, "Pairs per embedding of an evaluated observer.")
_USM_FLOOR = evaluate.define_usm_floor_flag()
_WORKDIRS = {
    name: flags.DEFINE_string(name, None, f"The trained {name} workdir.")
    for name in ("embedding", "psm_network", "multi_task", "per_observer", "universal")
}


def main(argv):
    del argv
    workdirs = {name: flag.value for name, flag in _WORKDIRS.items() if flag.value}
    if not workdirs:
        raise app.UsageError("Give at least one trained workdir (--psm_network=..., ...).")
    configs = {name: checkpoint.load_config(path) for name, path in workdirs.items()}
    datasets = {(c.dataset, c.data_dir) for c in configs.values()}
    if len(datasets) != 1:
        raise app.UsageError(f"The workdirs were trained on different datasets: {sorted(datasets)}")
    dataset, data_dir = datasets.pop()
    evaluation = evaluate.evaluation_set(dataset, data_dir, _PROTOCOL.value)
    scores = evaluate.evaluate(
        evaluation, data_dir, m=_M.value, usm_floor=_USM_FLOOR.value, **workdirs
    )
    title = f"{dataset}, {_PROTOCOL.value} set ({len(evaluation.image)} (image, observer) pairs)"
    rows = evaluate.table(scores)
    path = evaluate.write(rows, title, _OUTPUT.value, _PROTOCOL.value)
    print(path.read_text())


if __name__ == "__main__":
    flags.mark_flags_as_required(["output_dir"])
    app.run(main)
