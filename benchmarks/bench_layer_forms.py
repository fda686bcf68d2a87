r"""The layer forms tuned for XLA:CPU against the plain forms, on this machine's backend.

    .venv/bin/python benchmarks/bench_layer_forms.py [--models=embedding,psm_network,universal] \
        [--steps=5] [--batch=0] [--m=8]

`psm_jax.models.layers.cpu_forms()` picks the CPU forms (BatchNorm and bias sums as products with
their own gradients, the space-to-depth stride-2 convolution, the per-example convolution as a
loop of convolutions, EfficientNet-Lite's depthwise convolution as shifted sums) on the CPU and
the plain forms (nnx.BatchNorm, features + bias, XLA's strided and grouped convolutions) on GPU
and TPU. This times each model's real train step (forward, backward and update:
`bench_train.measure`, its flags) once with `PSM_JAX_LAYER_FORMS=cpu` and once with `=plain`, on
whatever backend JAX runs on, and prints the ratio; the default should be the faster form on that
backend (benchmarks/gpu_check.sh runs this on an accelerator). The encoder uses every form but the
depthwise one (stride-2 convolutions, biases, BatchNorm), the PSM network the stride-2
convolutions, biases and the per-example convolution, the universal model (bench_train's: the
small network of psm_jax/configs/ps.py) stride-2 convolutions and biases. The depthwise form
(EfficientNet-Lite's) is timed by `bench_efficientnet_lite.py --depthwise=...`. Prints a line per
model and form and a JSON line.
"""

import json
import os
import platform
import time

import bench_train  # its measure() and flags: --steps, --m, --observers, --batch, --models
import jax
from absl import app, flags

from psm_jax import cli, xla_defaults
from psm_jax.models import layers

flags.FLAGS.set_default("models", ["embedding", "psm_network", "universal"])


def main(argv):
    del argv
    figures = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, {jax.devices()[0].device_kind}",
        "backend": jax.default_backend(),
        "default_forms": "cpu" if layers.cpu_forms() else "plain",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "models": {},
    }
    print(
        f"backend {figures['backend']} ({figures['machine']}); the library's default here: the "
        f"{figures['default_forms']} forms",
        flush=True,
    )
    for model in flags.FLAGS.models:
        results = {}
        for forms in ("cpu", "plain"):
            os.environ[layers.LAYER_FORMS_VARIABLE] = forms  # read as the step is traced
            results[forms] = bench_train.measure(model)
            print(
                f"{model:12s} {forms:5s} forms, batch {results[forms]['batch']:4d}: "
                f"{1e3 * results[forms]['step_s']:9.1f} ms/step (first step with compilation "
                f"{results[forms]['first_step_with_compile_s']} s)",
                flush=True,
            )
        ratio = results["plain"]["step_s"] / results["cpu"]["step_s"]
        faster = "cpu" if ratio > 1 else "plain"
        print(f"{model:12s} plain / cpu step time: {ratio:.2f} (faster: the {faster} forms)")
        figures["models"][model] = {**results, "plain_over_cpu": round(ratio, 3)}
    os.environ.pop(layers.LAYER_FORMS_VARIABLE, None)
    print(json.dumps(figures))


if __name__ == "__main__":
    xla_defaults.apply()  # before JAX starts a backend (as the launchers do)
    app.run(main, flags_parser=cli.parse_flags)  # --help exits 0
