"""New viewers: enrol a person from m (image, fixations) pairs, then predict their saliency map for
any image (Strohm et al.'s use case), or fit them a new multi-task head (Xu et al.'s).

Every function takes restored models (`psm_jax.inference.restore`), so a job restores each once.

- `read_viewer`: a folder of images and a fixation table (`psm_jax.data.releases.table`'s format:
  image, x, y[, duration_ms][, subject], native 0-based pixel centres) -> working-resolution
  images and that person's PSMs (the datasets' definition, `psm_jax.data.saliency_maps`), with the
  data-quality rules of the dataset builders (`psm_jax.data.fixations.clean_fixations`).
- `enroll`: the trained encoder's embedding of those pairs (unit norm), no training.
- `predict`: that person's PSM for an image, composed as the evaluation does
  (`psm_jax.inference.compose_psm`) on the USM of a trained universal network (a new image has no
  ground-truth USM; a PSM network trained with the "predicted" config option matches it best).
- `adapt_multi_task_head`: Xu et al.'s alternative, which does train: a new head of the multi-task
  CNN fitted to the person's pairs, the shared layers frozen, through the train step every model
  uses (`psm_jax.train.step`). `enroll_multi_task_head` runs it with the universal network's USMs;
  `save_head` / `load_head` keep the head in a .npz; `predict_with_head` uses it.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from PIL import Image
from tqdm import tqdm

from psm_jax import inference, registry
from psm_jax.data import fixations as fixations_lib
from psm_jax.data import saliency_maps
from psm_jax.data.releases import table as table_lib
from psm_jax.data.releases.base import to_rgb
from psm_jax.models import layers, multi_task
from psm_jax.train import step as train_step

OSIE_SIGMA_PX, OSIE_WIDTH = 24.0, 800.0

MAX_SIDE = 1024
"""The longest side, in pixels, a person's image is read at for the universal model and the
overlays (`read_rgb`): twice the largest input a model reads (a backbone's 512x384), and the
overlays' size. A photo's own resolution (8000x6000) read and drawn as it was peaked at 11 GB."""


def _open_rgb(path: str | Path, size: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """(the image as RGB, box-shrunk to fit (W, H) `size` keeping its aspect ratio, or as it is
    when smaller; native (H, W)). A JPEG is decoded at a reduced scale (`Image.draft`, 1/2 to
    1/8) no smaller than `size`, so a large photo is never held at its own resolution."""
    with Image.open(path) as image:
        native = (image.height, image.width)
        image.draft("RGB", size)
        image = to_rgb(image)  # by its real range (16-bit, transparency)
    if image.width > size[0] or image.height > size[1]:
        image.thumbnail(size, Image.Resampling.BOX)
    return image, native


def load_image(path: Path, working_size) -> tuple[np.ndarray, tuple[int, int]]:
    """(image at `working_size` (H, W), uint8; native (H, W)); a ValueError names a bad file."""
    try:
        image, native = _open_rgb(path, (2 * working_size[1], 2 * working_size[0]))
        return np.asarray(image.resize(working_size[::-1], Image.Resampling.BOX)), native
    except Exception as error:  # noqa: BLE001 - name the file whatever PIL raised
        raise ValueError(f"Cannot read the image {path}: {error}") from error


def read_rgb(path: str | Path) -> np.ndarray:
    """The image, (H, W, 3) uint8, at most `MAX_SIDE` px on its long side (for the universal
    model and the overlays); a ValueError names a bad file."""
    try:
        return np.asarray(_open_rgb(path, (MAX_SIDE, MAX_SIDE))[0])
    except Exception as error:  # noqa: BLE001 - name the file whatever PIL raised
        raise ValueError(f"Cannot read the image {path}: {error}") from error


def read_viewer(
    images_dir: str | Path,
    fixations: str | Path,
    *,
    subject: str | None = None,
    working_size: tuple[int, int] = saliency_maps.WORKING_SIZE,
    sigma_px: float | None = None,
    weight_by_duration: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One person's (image, PSM) pairs: (N, H, W, 3) uint8, (N, H, W) float32, image names.

    Args:
      images_dir: the folder of the images the table names.
      fixations: the person's fixation table (module docstring).
      subject: the person, when the table holds several (its `subject` column).
      working_size: (H, W) of the maps.
      sigma_px: Gaussian sigma in native pixels; default OSIE's 24 px at 800 px width, scaled to
        each image's width.
      weight_by_duration: weight fixations by their duration.
    """
    if sigma_px is not None and not 0 < sigma_px < np.inf:
        raise ValueError(f"--sigma_px={sigma_px}: the PSM blur must be finite and positive.")
    image_names, people, table, read_counts = table_lib.read_fixation_table(
        fixations, one_person=True, images_folder=f"--images_dir={images_dir}"
    )
    if subject is not None:
        if subject not in people:
            raise ValueError(f"{fixations} has no subject {subject!r}; it has {people}.")
        table = table.select(table.observer == people.index(subject))
    elif len(people) > 1:
        raise ValueError(
            f"{fixations} holds the fixations of {len(people)} people ({', '.join(people[:5])}"
            f"{', ...' if len(people) > 5 else ''}); choose one (--subject)."
        )
    loaded = []
    for name in image_names:
        path = Path(images_dir) / name
        if not path.exists():
            raise FileNotFoundError(f"{fixations} names image {name!r}, not found in {images_dir}.")
        loaded.append(load_image(path, working_size))
    sizes = np.array([native for _, native in loaded], np.int64).reshape(-1, 2)
    table, counts = fixations_lib.clean_fixations(table, sizes)
    counts.update(read_counts)
    if any(counts.values()):
        logging.warning("%s: %s", fixations, ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    images, psms, names = [], [], []
    for index, rows in enumerate(table.rows_by_image(len(image_names))):
        if not len(rows):
            continue
        native = tuple(sizes[index])
        psm, valid = saliency_maps.personal_saliency_maps(
            table.x[rows],
            table.y[rows],
            np.zeros(len(rows), np.int64),
            viewing=table.viewing[rows],
            num_observers=1,
            native_size=native,
            sigma=sigma_px or OSIE_SIGMA_PX * native[1] / OSIE_WIDTH,
            duration_ms=table.duration_ms[rows],
            weight_by_duration=weight_by_duration,
            working_size=working_size,
        )
        if valid[0]:
            images.append(loaded[index][0])
            psms.append(psm[0])
            names.append(image_names[index])
    if not images:
        raise ValueError(f"{fixations}: no image with a usable fixation.")
    return np.stack(images), np.stack(psms).astype(np.float32), names


def viewer_usms(
    universal: inference.Restored, images_dir: str | Path, names: list[str]
) -> np.ndarray:
    """(N, H, W) the universal model's USMs of a viewer's images (`read_viewer`'s names), each
    read at its own resolution (a model with a backbone reads them larger than the working
    size)."""
    return inference.predicted_usms(universal, [read_rgb(Path(images_dir) / n) for n in names])


def enroll(
    encoder: inference.Restored,
    images: np.ndarray,
    psms: np.ndarray,
    usms: np.ndarray | None = None,
) -> np.ndarray:
    """The (d,) unit-norm user embedding of m (image, PSM) pairs; no training. An encoder trained
    on departures from the USM (`input_map="discrepancy"`) also needs the images' USMs (a new
    person's images have none but the universal network's: `inference.predicted_usms`)."""
    if encoder.kind != "embedding":
        raise ValueError(f"{encoder.workdir} holds a {encoder.kind!r} model, not 'embedding'.")
    if encoder.model.needs_usms and usms is None:
        raise ValueError(
            f"The encoder in {encoder.workdir} reads each pair's departure from the USM "
            "(input_map='discrepancy'): enrol with the images' USMs "
            "(launch/enroll.py: --universal)."
        )
    batch_usms = None if usms is None else np.asarray(usms, np.float32)[None]
    return np.asarray(encoder.model(images[None], psms[None], batch_usms)[0])


def read_numpy_file(path: str | Path, what: str, writer: str) -> np.ndarray | dict:
    """A user's .npy (an array) or .npz (a dict of arrays, read in full); a missing, empty,
    truncated or non-NumPy file is an OSError or ValueError naming it, its role `what` and the
    command that writes it (`writer`), never NumPy's EOFError or zip errors.

    Args:
      path: the file; what: what it should hold ("embedding", "head"); writer: the command that
        writes one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The {what} {path} does not exist (write one: {writer}).")
    if path.stat().st_size == 0:
        raise ValueError(f"The {what} {path} is empty (0 bytes); write it again: {writer}.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                loaded = dict(loaded)  # reads every member: a cut-short one fails here
        return loaded
    except ValueError as error:
        if "pickled" in str(error):  # np.load's word for a file without a NumPy header
            raise ValueError(
                f"The {what} {path} is not a NumPy file (.npy or .npz); give the one {writer} "
                "wrote."
            ) from error
        reason = error
    except Exception as error:  # noqa: BLE001 - EOFError, zipfile.BadZipFile, zlib.error, ...
        reason = error
    raise ValueError(
        f"The {what} {path} is truncated or damaged ({type(reason).__name__}: {reason}); write "
        f"it again: {writer}."
    )


def load_embedding(path: str | Path) -> np.ndarray:
    """A person's embedding from the .npy `launch/enroll.py` wrote (`read_numpy_file`); its size
    and values are checked against a PSM network by `check_embedding`."""
    loaded = read_numpy_file(path, "embedding", "launch/enroll.py")
    if isinstance(loaded, dict):
        raise ValueError(
            f"{path} is a .npz (a multi-task head?), not an embedding (.npy): give a head as "
            "--head with --multi_task."
        )
    return loaded


def check_embedding(psm_network: inference.Restored, user_embedding) -> np.ndarray:
    """The embedding as float32 (d,); a ValueError if its size is not the PSM network's or it
    holds NaN or infinite values (a network would turn it into an all-NaN map)."""
    user_embedding = np.asarray(user_embedding, np.float32)
    expected = (psm_network.model.config.embedding_size,)
    if user_embedding.shape != expected:
        raise ValueError(
            f"the embedding has shape {user_embedding.shape}; the PSM network in "
            f"{psm_network.workdir} takes {expected} (enrol with its own encoder: "
            "launch/enroll.py)."
        )
    if not np.isfinite(user_embedding).all():
        raise ValueError("the embedding holds NaN or infinite values; enrol the person again.")
    return user_embedding


def predict(
    psm_network: inference.Restored,
    universal: inference.Restored,
    user_embedding: np.ndarray,
    image_path: str | Path,
    usm_floor: float,
    discrepancy_weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image (H, W, 3) uint8, predicted USM, predicted PSM), maps (H, W) in [0, 1] at the
    networks' working resolution."""
    inference.check_composition(usm_floor, discrepancy_weight)
    user_embedding = check_embedding(psm_network, user_embedding)
    image, _ = load_image(Path(image_path), psm_network.working_size)
    usm = inference.predicted_usms(universal, [read_rgb(image_path)])
    discrepancy = inference.predict_discrepancy(psm_network, image[None], usm, user_embedding[None])
    psm = inference.compose(psm_network, usm, discrepancy, usm_floor, discrepancy_weight)
    return image, usm[0], psm[0]


def predict_with_head(
    multi_task_cnn: inference.Restored,
    head_path: str | Path,
    universal: inference.Restored,
    image_path: str | Path,
    usm_floor: float,
    discrepancy_weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As `predict`, for a person enrolled with Xu et al.'s path (`enroll_multi_task_head`)."""
    inference.check_composition(usm_floor, discrepancy_weight)
    person = load_head(multi_task_cnn, head_path)
    image, _ = load_image(Path(image_path), multi_task_cnn.working_size)
    usm = inference.predicted_usms(universal, [read_rgb(image_path)])
    discrepancy = inference.predict_discrepancy(person, image[None], usm, np.zeros(1, np.int32))
    psm = inference.compose(person, usm, discrepancy, usm_floor, discrepancy_weight)
    return image, usm[0], psm[0]


def check_adaptation(steps: int, learning_rate: float, batch_size: int = 16) -> None:
    """A ValueError naming the flag (launch/enroll.py's) when `adapt_multi_task_head`'s steps or
    batch size is below 1 or its learning rate is not finite and positive."""
    for name, value in (("--steps", steps), ("batch_size", batch_size)):
        if value < 1:
            raise ValueError(f"{name}={value}: must be an integer, 1 or more.")
    if not 0 < learning_rate < np.inf:
        raise ValueError(
            f"--learning_rate={learning_rate}: the SGD learning rate must be finite and positive "
            "(default 0.02)."
        )


def adapt_multi_task_head(
    multi_task_cnn: inference.Restored,
    images: np.ndarray,
    psms: np.ndarray,
    usms: np.ndarray,
    *,
    steps: int = 200,
    batch_size: int = 16,
    learning_rate: float = 0.02,
    seed: int = 0,
    progress: bool = True,
):
    """Xu et al.'s adaptation path: a new observer's own head for the trained multi-task CNN.

    The shared layers (conv1-conv4) stay as trained; only a new head (conv5-conv7 and the 1x1 side
    convolutions) is trained, with the deep-supervised MSE on the person's (image, USM, PSM) pairs,
    through the train step every model uses (`psm_jax.train.step`, the shared parameters'
    optimiser `optax.set_to_zero()`). The head starts from the mean of the trained observers'
    heads (our choice; the paper does not say), SGD with momentum 0.9.

    Args:
      multi_task_cnn: the trained multi-task CNN.
      images: (N, H, W, 3) uint8; psms, usms: (N, H, W) in [0, 1] (the USMs the model expects:
        ground-truth or predicted, as it was trained).
      progress: a progress bar over the steps (minutes on a CPU), as the training loop's.

    Returns:
      (person, losses): a one-observer `Restored` multi-task CNN (call it with observer 0) and the
      training loss of every step.
    """
    _expect_multi_task(multi_task_cnn)
    check_adaptation(steps, learning_rate, batch_size)
    trained = multi_task_cnn.model
    model = _one_observer_model(trained, seed)
    heads = jax.tree.map(
        lambda rows: jnp.mean(rows, axis=0, keepdims=True), nnx.state(trained, layers.ObserverParam)
    )
    nnx.update(model, heads)
    config = multi_task_cnn.config.copy_and_resolve_references()
    config.loss_reduction = "mean"
    tx, frozen = optax.sgd(learning_rate, momentum=0.9), optax.set_to_zero()
    graphdef, state = train_step.init_state(model, tx, shared_tx=frozen)
    step = jax.jit(
        train_step.make_step(graphdef, tx, registry.get("multi_task").loss(config), None, frozen)
    )
    target = saliency_maps.discrepancy_maps(psms, usms, saliency_maps.OUTPUT_SIZE)
    rng = np.random.default_rng(seed)
    history = []
    bar = tqdm(range(steps), desc="new head", unit="step", disable=not progress, leave=False)
    for _ in bar:
        chosen = rng.choice(len(images), size=min(batch_size, len(images)), replace=False)
        batch = {
            "image": images[chosen],
            "usm": usms[chosen],
            "discrepancy": target[chosen],
            "observer": np.zeros(len(chosen), np.int32),
        }
        state, measurements = step(state, batch)
        history.append(float(measurements["loss"]))
        bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
    if int(state.nonfinite_step) >= 0:
        raise RuntimeError(  # a user error (launch/runner.py): the learning rate is too high
            f"The new head's loss became non-finite at step {int(state.nonfinite_step)}: "
            f"lower --learning_rate (it was {learning_rate})."
        )
    person = train_step.merge(graphdef, state)
    person.eval()
    return _as_person(multi_task_cnn, person), np.asarray(history)


def enroll_multi_task_head(
    multi_task_cnn: inference.Restored,
    universal: inference.Restored,
    images: np.ndarray,
    psms: np.ndarray,
    usms: np.ndarray | None = None,
    **adapt_options,
):
    """Xu et al.'s enrolment of a new person: `adapt_multi_task_head` on their (image, PSM) pairs,
    the USMs predicted by the universal model (a person's own images have no ground-truth USM):
    `usms` where the caller has them from the images at their own resolution (`viewer_usms`),
    else from `images`. Returns (person, losses)."""
    if not multi_task_cnn.predicted_usm:
        logging.warning(
            "%s was trained on ground-truth USMs and now gets predicted ones; a multi-task CNN "
            "trained with the 'predicted' config option matches them better.",
            multi_task_cnn.workdir,
        )
    if usms is None:
        usms = inference.predicted_usms(universal, images)
    return adapt_multi_task_head(multi_task_cnn, images, psms, usms, **adapt_options)


def head_arrays(model: nnx.Module) -> dict[str, np.ndarray]:
    """The per-observer parameters of a model by their path (the .npz keys of a head)."""
    return {
        "/".join(map(str, path)): np.asarray(variable.get_value())
        for path, variable in nnx.to_flat_state(nnx.state(model, layers.ObserverParam))
    }


def save_head(person: inference.Restored, path: str | Path) -> Path:
    """Writes the head of a one-observer multi-task CNN (`adapt_multi_task_head`) to a .npz;
    returns the path written (".npz" is appended when `path` lacks it, as NumPy does)."""
    path = Path(path)
    path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    np.savez(path, **head_arrays(person.model))
    return path


def load_head(multi_task_cnn: inference.Restored, head_path: str | Path) -> inference.Restored:
    """The trained multi-task CNN's shared layers with the head of `head_path` (`save_head`): a
    one-observer model to call with observer 0."""
    _expect_multi_task(multi_task_cnn)
    model = _one_observer_model(multi_task_cnn.model)
    expected = head_arrays(model)
    arrays = read_numpy_file(head_path, "head", "launch/enroll.py --method=multi_task_head")
    if not isinstance(arrays, dict):
        raise ValueError(
            f"{head_path} is not a .npz head (launch/enroll.py --method=multi_task_head)."
        )
    if set(arrays) != set(expected) or any(arrays[k].shape != v.shape for k, v in expected.items()):
        raise ValueError(
            f"{head_path} is not a head of the multi-task CNN in {multi_task_cnn.workdir} "
            "(different layers or sizes)."
        )
    broken = [key for key, values in arrays.items() if not np.isfinite(values).all()]
    if broken:
        # The network would turn them into an all-NaN map, as it would a NaN embedding.
        raise ValueError(
            f"{head_path}: the head holds NaN or infinite values ({', '.join(broken)}); enrol "
            "the person again (launch/enroll.py --method=multi_task_head, a lower "
            "--learning_rate)."
        )
    state = nnx.state(model, layers.ObserverParam)
    for path, variable in nnx.to_flat_state(state):
        variable.set_value(jnp.asarray(arrays["/".join(map(str, path))]))
    nnx.update(model, state)
    model.eval()
    return _as_person(multi_task_cnn, model)


def _expect_multi_task(restored: inference.Restored) -> None:
    if restored.kind != "multi_task":
        raise ValueError(f"{restored.workdir} holds a {restored.kind!r} model, not multi_task.")


def _as_person(multi_task_cnn: inference.Restored, model: nnx.Module) -> inference.Restored:
    """A one-observer model with the trained network's config (one observer)."""
    config = multi_task_cnn.config.copy_and_resolve_references()
    config.num_observers = 1
    return inference.Restored(multi_task_cnn.workdir, config, model, multi_task_cnn.step)


def _one_observer_model(trained, seed: int = 0):
    """A one-observer MultiTaskCNN with `trained`'s shared layers (its head freshly initialised)."""
    model = multi_task.MultiTaskCNN(1, trained.config, rngs=nnx.Rngs(seed))
    nnx.update(model, nnx.state(trained, nnx.Not(layers.ObserverParam)))
    return model
