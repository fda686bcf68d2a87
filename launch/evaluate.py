"""Evaluates trained workdirs on a dataset's test images and writes the results table.

    python launch/evaluate.py --protocol=closed \
        --output_dir=runs/synthetic_personal_saliency/report \
        --embedding=runs/synthetic_personal_saliency/embedding \
        --psm_network=runs/synthetic_personal_saliency/psm_network \
        --multi_task=runs/synthetic_personal_saliency/multi_task \
        --per_observer=runs/synthetic_personal_saliency/per_observer \
        --universal=runs/synthetic_personal_saliency/universal

The dataset and data_dir come from the workdirs' saved configs (all must agree). Writes
`<output_dir>/<protocol>.md` and `.json` (rows keyed by a stable id, with the USM floor, the
discrepancy weight and m used) and prints the table. Rows whose workdir is not given are left out.
Settings default to psm_jax/configs/evaluation.py: predicted PSM = clip(USM + 0.5 x discrepancy,
0.3 x USM, 1) (ours); --usm_floor=0 --discrepancy_weight=1 scores the papers' clip(USM +
discrepancy, 0, 1). --compute_dtype=bfloat16 evaluates the same checkpoints computing in bf16.
"""

import runner
import shared_flags
from absl import app, flags

import tfds_builders  # noqa: F401  (registers the datasets with TFDS)
from psm_jax import registry
from psm_jax.configs import evaluation as evaluation_config
from psm_jax.evaluation import methods, pairs, report
from psm_jax.models import layers

flags.adopt_module_key_flags(runner)  # --verbose shows in --help

flags.adopt_module_key_flags(shared_flags)
_PROTOCOL = flags.DEFINE_enum("protocol", "closed", list(pairs.PROTOCOLS), "Observers to score.")
_OUTPUT = flags.DEFINE_string("output_dir", None, "Where the table goes.")
_M = flags.DEFINE_integer(
    "m", evaluation_config.get_config().m, "Pairs per embedding of an evaluated observer."
)
_COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype",
    None,
    list(layers.COMPUTE_DTYPES),
    "Compute the encoder, the PSM network and Strohm's per-observer networks in this dtype "
    "instead of the one they trained in (parameters as saved); e.g. bfloat16 on an accelerator. "
    "Other models compute in float32.",
)
_WORKDIRS = {
    name: flags.DEFINE_string(name, None, f"The trained {name} workdir ({spec.summary}).")
    for name, spec in registry.MODELS.items()
}


def main(argv):
    del argv
    workdirs = {name: flag.value for name, flag in _WORKDIRS.items() if flag.value}
    if not workdirs:
        raise app.UsageError("Give at least one trained workdir (--psm_network=..., ...).")
    models = methods.Models.restore(workdirs, compute_dtype=_COMPUTE_DTYPE.value)
    sources = {(r.config.dataset, r.config.data_dir) for r in models.given().values()}
    if len(sources) != 1:
        raise app.UsageError(f"The workdirs were trained on different datasets: {sorted(sources)}")
    dataset, data_dir = sources.pop()
    evaluation_set = pairs.evaluation_set(dataset, data_dir, _PROTOCOL.value)
    table, _, _ = report.evaluate(
        evaluation_set,
        models,
        usm_floor=shared_flags.USM_FLOOR.value,
        m=_M.value,
        discrepancy_weight=shared_flags.DISCREPANCY_WEIGHT.value,
    )
    print(table.write(_OUTPUT.value).read_text())


if __name__ == "__main__":
    flags.mark_flags_as_required(["output_dir"])
    runner.run(main)
