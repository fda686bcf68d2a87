"""New viewers without retraining: enrol a person from m (image, fixations) pairs, then predict
their saliency map for any image (Strohm et al.'s use case).

- `read_viewer`: a folder of images and a fixation table (CSV: image, x, y[, duration_ms], native
  0-based pixel centres, one person) -> working-resolution images and that person's PSMs (the
  same definition as the datasets', `psm_jax.data.saliency_maps`).
- `enroll`: the trained encoder's embedding of those pairs (unit norm).
- `predict`: that person's PSM for an image: USM + discrepancy, clipped as the evaluation does
  (`psm_jax.evaluate.personalised_psm`), the USM predicted by a trained universal network (a new
  image has no ground-truth USM). A PSM network trained on
  ground-truth USMs then sees predicted ones: train it with the "predicted" config option for the
  best match.
- `adapt_multi_task_head`: Xu et al.'s alternative, which does need training: a new head of the
  multi-task CNN fitted to the person's pairs, shared layers frozen. `enroll_multi_task_head` runs
  it on a person's pairs with USMs from a universal network, `save_head` / `load_head` keep the
  head in a .npz (the Xu path's counterpart of the embedding), `predict_with_head` uses it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from PIL import Image

from psm_jax import losses as losses_lib
from psm_jax.data import saliency_maps
from psm_jax.evaluate import personalised_psm
from psm_jax.models import layers, multi_task
from psm_jax.train import checkpoint, loop

OSIE_SIGMA_PX, OSIE_WIDTH = 24.0, 800.0


def _load_image(path: Path, working_size) -> tuple[np.ndarray, tuple[int, int]]:
    try:
        with Image.open(path) as image:
            native = (image.height, image.width)
            image = image.convert("RGB").resize(working_size[::-1], Image.Resampling.BOX)
            return np.asarray(image), native
    except Exception as error:  # noqa: BLE001 - name the file whatever PIL raised
        raise ValueError(f"Cannot read the image {path}: {error}") from error


def read_fixation_table(path: str | Path) -> dict[str, np.ndarray]:
    """image -> (F, 3) array of x, y, duration_ms (1.0 when the column is absent)."""
    path = Path(path)
    by_image: dict[str, list] = {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"image", "x", "y"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path} lacks the column(s) {sorted(missing)}; need image, x, y.")
        for line, row in enumerate(reader, start=2):
            try:
                values = (float(row["x"]), float(row["y"]), float(row.get("duration_ms") or 1.0))
            except ValueError as error:
                raise ValueError(f"{path}, line {line}: {error}") from error
            by_image.setdefault(row["image"], []).append(values)
    return {image: np.asarray(rows, np.float64) for image, rows in by_image.items()}


def read_viewer(
    images_dir: str | Path,
    fixations: str | Path,
    *,
    working_size: tuple[int, int] = saliency_maps.WORKING_SIZE,
    sigma_px: float | None = None,
    weight_by_duration: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One person's (image, PSM) pairs: (N, H, W, 3) uint8, (N, H, W) float32, image names.

    sigma_px: Gaussian sigma in native pixels; default OSIE's 24 px at 800 px width, scaled to
    each image's width.
    """
    table = read_fixation_table(fixations)
    images, psms, names = [], [], []
    for name, rows in sorted(table.items()):
        path = Path(images_dir) / name
        if not path.exists():
            raise FileNotFoundError(f"{fixations} names image {name!r}, not found in {images_dir}.")
        image, native = _load_image(path, working_size)
        sigma = sigma_px or OSIE_SIGMA_PX * native[1] / OSIE_WIDTH
        x = np.clip(rows[:, 0], 0, native[1] - 1)
        y = np.clip(rows[:, 1], 0, native[0] - 1)
        psm, valid = saliency_maps.personal_saliency_maps(
            x,
            y,
            np.zeros(len(rows), np.int64),
            num_observers=1,
            native_size=native,
            sigma=sigma,
            duration_ms=rows[:, 2],
            weight_by_duration=weight_by_duration,
            working_size=working_size,
        )
        if valid[0]:
            images.append(image)
            psms.append(psm[0])
            names.append(name)
    if not images:
        raise ValueError(f"{fixations}: no image with a usable fixation.")
    return np.stack(images), np.stack(psms).astype(np.float32), names


def enroll(encoder_workdir: str | Path, images: np.ndarray, psms: np.ndarray) -> np.ndarray:
    """The (d,) unit-norm user embedding of m (image, PSM) pairs; no training."""
    encoder, _, _ = loop.restore_model(encoder_workdir)
    return np.asarray(encoder(images[None], psms[None])[0])


def predicted_usms(universal_workdir: str | Path, images: np.ndarray) -> np.ndarray:
    """(N, H, W) USMs of (N, H, W, 3) uint8 images by a trained universal network."""
    universal, _, _ = loop.restore_model(universal_workdir)
    return np.asarray(universal.usm(layers.model_input(images, None)))


def predict(
    psm_network_workdir: str | Path,
    universal_workdir: str | Path,
    user_embedding: np.ndarray,
    image_path: str | Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image (H, W, 3) uint8, predicted USM, predicted PSM), maps (H, W) in [0, 1] at the
    networks' working resolution."""
    network, config, metadata = loop.restore_model(psm_network_workdir)
    image, _ = _load_image(Path(image_path), tuple(metadata.working_size))
    usm = predicted_usms(universal_workdir, image[None])
    discrepancy = network(layers.model_input(image[None], usm), user_embedding[None])[-1]
    psm = personalised_psm(usm, np.asarray(discrepancy))
    return image, usm[0], psm[0]


def predict_with_head(
    multi_task_workdir: str | Path,
    head_path: str | Path,
    universal_workdir: str | Path,
    image_path: str | Path,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As `predict`, for a person enrolled with Xu et al.'s path (`enroll_multi_task_head`)."""
    trained, metadata = _restore_multi_task(multi_task_workdir)
    model = _with_head(trained, head_path, multi_task_workdir)
    image, _ = _load_image(Path(image_path), tuple(metadata.working_size))
    usm = predicted_usms(universal_workdir, image[None])
    inputs = layers.model_input(image[None], usm)[..., : model.config.in_channels]
    discrepancy = model(inputs, jnp.zeros(1, jnp.int32))[-1]
    psm = personalised_psm(usm, np.asarray(discrepancy))
    return image, usm[0], psm[0]


def save_overlay(image: np.ndarray, saliency: np.ndarray, path: str | Path) -> None:
    """A PNG of the image with the map overlaid in the jet colour map (opacity = 0.6 x map)."""
    import matplotlib

    colour = matplotlib.colormaps["jet"](saliency)[..., :3]
    alpha = 0.6 * saliency[..., None]
    blended = (1 - alpha) * (image / 255.0) + alpha * colour
    Image.fromarray((255 * np.clip(blended, 0, 1)).astype(np.uint8)).save(path)


def adapt_multi_task_head(
    multi_task_workdir: str | Path,
    images: np.ndarray,
    psms: np.ndarray,
    usms: np.ndarray,
    *,
    steps: int = 200,
    batch_size: int = 16,
    learning_rate: float = 0.02,
    seed: int = 0,
):
    """Xu et al.'s adaptation path: a new observer's own head for the trained multi-task CNN.

    The shared layers (conv1-conv4) stay as trained; only a new head (conv5-conv7 and the 1x1 side
    convolutions) is trained, with the deep-supervised MSE on the person's (image, USM, PSM) pairs.
    The head starts from the mean of the trained observers' heads (our choice; the paper does not
    say), SGD with momentum 0.9.

    Args:
      multi_task_workdir: the trained multi-task CNN.
      images: (N, H, W, 3) uint8; psms, usms: (N, H, W) in [0, 1] (the USMs the model expects:
        ground-truth or predicted, as it was trained).

    Returns:
      (model, losses): a one-observer MultiTaskCNN (call it with observer 0) and the training loss
      of every step.
    """
    trained, _ = _restore_multi_task(multi_task_workdir)
    model = _one_observer_model(trained, seed)
    heads = jax.tree.map(
        lambda rows: jnp.mean(rows, axis=0, keepdims=True), nnx.state(trained, layers.ObserverParam)
    )
    nnx.update(model, heads)
    optimizer = nnx.Optimizer(
        model, optax.sgd(learning_rate, momentum=0.9), wrt=layers.ObserverParam
    )
    target = saliency_maps.discrepancy_maps(psms, usms, saliency_maps.OUTPUT_SIZE)
    inputs = layers.model_input(images, usms)[..., : trained.config.in_channels]

    @nnx.jit
    def train_step(model, optimizer, inputs, target):
        def loss_fn(model):
            outputs = model(inputs, jnp.zeros(inputs.shape[0], jnp.int32))
            return losses_lib.deep_supervised_mse(outputs, target)

        loss, grads = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, layers.ObserverParam))(
            model
        )
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(seed)
    history = []
    for _ in range(steps):
        chosen = rng.choice(len(images), size=min(batch_size, len(images)), replace=False)
        history.append(float(train_step(model, optimizer, inputs[chosen], target[chosen])))
    model.eval()
    return model, np.asarray(history)


def enroll_multi_task_head(
    multi_task_workdir: str | Path,
    universal_workdir: str | Path,
    images: np.ndarray,
    psms: np.ndarray,
    **adapt_options,
):
    """Xu et al.'s enrolment of a new person: `adapt_multi_task_head` on their (image, PSM) pairs,
    the USMs predicted by the universal network (a person's own images have no ground-truth USM).
    Returns (model, losses)."""
    if checkpoint.load_config(multi_task_workdir).usm != "external":
        logging.warning(
            "%s was trained on ground-truth USMs and now gets predicted ones; a multi-task CNN "
            "trained with the 'predicted' config option matches them better.",
            multi_task_workdir,
        )
    usms = predicted_usms(universal_workdir, images)
    return adapt_multi_task_head(multi_task_workdir, images, psms, usms, **adapt_options)


def _head_arrays(model) -> dict[str, np.ndarray]:
    return {
        "/".join(map(str, path)): np.asarray(variable.get_value())
        for path, variable in nnx.to_flat_state(nnx.state(model, layers.ObserverParam))
    }


def save_head(model, path: str | Path) -> Path:
    """Writes the head of a one-observer multi-task CNN (`adapt_multi_task_head`) to a .npz;
    returns the path written (".npz" is appended when `path` lacks it, as NumPy does)."""
    path = Path(path)
    path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    np.savez(path, **_head_arrays(model))
    return path


def load_head(multi_task_workdir: str | Path, head_path: str | Path):
    """The trained multi-task CNN's shared layers with the head of `head_path` (`save_head`): a
    one-observer model to call with observer 0."""
    trained, _ = _restore_multi_task(multi_task_workdir)
    return _with_head(trained, head_path, multi_task_workdir)


def _restore_multi_task(workdir: str | Path):
    trained, config, metadata = loop.restore_model(workdir)
    if config.model != "multi_task":
        raise ValueError(f"{workdir} holds a {config.model!r} model, not multi_task.")
    return trained, metadata


def _one_observer_model(trained, seed: int = 0):
    """A one-observer MultiTaskCNN with `trained`'s shared layers (its head freshly initialised)."""
    model = multi_task.MultiTaskCNN(1, trained.config, rngs=nnx.Rngs(seed))
    nnx.update(model, nnx.state(trained, nnx.Not(layers.ObserverParam)))
    return model


def _with_head(trained, head_path: str | Path, multi_task_workdir: str | Path):
    model = _one_observer_model(trained)
    expected = _head_arrays(model)
    try:
        stored = np.load(head_path)
    except (OSError, ValueError) as error:
        raise ValueError(f"Cannot read the head {head_path}: {error}") from error
    if not isinstance(stored, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{head_path} is not a .npz head (launch/enroll.py --method=multi_task_head)."
        )
    with stored:
        arrays = dict(stored)
    if set(arrays) != set(expected) or any(arrays[k].shape != v.shape for k, v in expected.items()):
        raise ValueError(
            f"{head_path} is not a head of the multi-task CNN in {multi_task_workdir} "
            "(different layers or sizes)."
        )
    state = nnx.state(model, layers.ObserverParam)
    for path, variable in nnx.to_flat_state(state):
        variable.set_value(jnp.asarray(arrays["/".join(map(str, path))]))
    nnx.update(model, state)
    model.eval()
    return model
