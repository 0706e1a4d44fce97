"""Which landmark source agrees with dlib's own chips: ``python benchmarks/dlib_chip_agreement.py --root SCUT_ROOT``.

Why: the ``dlib_resnet`` backbone's first unit (:class:`comparators.dlib_chip.FaceChip`) aligns each
face to dlib's 150 x 150 chip, and dlib's HOG detector (``detector(img, 1)``) was nearly all of its
cost. A cheaper way to the five landmarks is only worth taking if the descriptor the network
computes on the resulting chip stays what dlib computes on its own chip.

The faces are the first ``--faces`` of the split's test list, read as the model reads them
(:func:`orderlearn.data.images.load_image`, the evaluation transform at ``--image-size``,
ImageNet-normalised) and turned back into the 0-255 pixels the chip unit sees. The reference is
dlib-bin alone on those pixels: ``detector(img, 1)``, the 5-point ``shape_predictor``,
``dlib.get_face_chip(img, shape, 150, 0.25)`` and ``compute_face_descriptor`` on that chip. Each
candidate source gives landmarks, :meth:`FaceChip.warp` makes our chip, and our PyTorch network
(the package's weights) its descriptor. Per source:

* ms/face: the landmark step alone, and the whole chip (landmarks + warp), ``--threads`` threads;
* found: faces the source's detector found (a downscaled copy that shows none is searched again
  at full size, upsampled once; the rest: the shape predictor on the whole image);
* landmark distance: where the source's alignment puts dlib's five template points, seen in the
  reference chip, in chip pixels (mean over points and faces; max over faces of the per-face mean);
* chip |diff|: mean absolute difference of our chip and dlib's reference chip, 0-255 levels;
* descriptor: Euclidean distance (median, 95th percentile, max) and cosine distance (median)
  between our descriptor of our chip and dlib's descriptor of its chip; dlib's own same-person
  threshold is 0.6 Euclidean.

``mtcnn``: facenet-pytorch's MTCNN points (eyes, nose tip, mouth corners: other points than
dlib's) mapped onto their mean position in dlib's chip, measured on the ``--calibration`` faces
that follow the compared ones in the test list. Where the files are not already of
``--image-size`` (the official release's 350 px originals), a last row (context, not a candidate)
is dlib-bin on the original file: how much dlib's own descriptor moves with the input resolution
alone.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path[0] = str(REPO)  # the repository's packages, not this folder's scripts

import numpy as np  # noqa: E402
import torch  # noqa: E402

from comparators.dlib_chip import LANDMARK_SOURCES, DlibLandmarks, LandmarkSource, FaceChip, chip_points, similarity  # noqa: E402
from comparators.dlib_resnet import PACKAGE, WEIGHTS_FILE, DlibResNet, load_dlib_weights, packaged_weights  # noqa: E402
from comparators.package_files import find_package_file  # noqa: E402
from comparators.transforms import make_transform  # noqa: E402
from orderlearn.data.images import load_image  # noqa: E402
from orderlearn.data.scut import read_split  # noqa: E402

PointsFn = Callable[[np.ndarray], tuple[np.ndarray, bool]]


@dataclass
class Reference:
    """dlib-bin's own pipeline on one face: landmarks, chip (uint8 HWC) and descriptor."""

    points: np.ndarray
    chip: np.ndarray
    descriptor: np.ndarray


@dataclass
class Row:
    name: str
    landmark_ms: float
    chip_ms: float
    found: int
    distances: list[float]
    chip_diff: float
    euclid: list[float]
    cosine: list[float]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="the SCUT-FBP5500 folder (with Images/ and train_test_files/)")
    parser.add_argument("--split", default="fold1")
    parser.add_argument("--faces", type=int, default=100)
    parser.add_argument("--calibration", type=int, default=50, help="faces after the compared ones that place MTCNN's points")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-mtcnn", action="store_true")
    parser.add_argument("--sides", type=lambda text: [int(v) for v in text.split(",")], default=[180, 150, 112, 104, 96],
                        help="longer sides (px) of the downscaled copies the detector runs on, besides the named sources")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import dlib

    _, test = read_split(args.root, args.split, ratings=None)
    paths = [s.path for s in test[: args.faces + args.calibration]]
    transform = make_transform(args.image_size)
    chip_unit = FaceChip()
    pixels = chip_unit.pixels(torch.stack([transform(load_image(p)) for p in paths]))
    images = [np.ascontiguousarray(p.round().clamp(0, 255).byte().permute(1, 2, 0).numpy()) for p in pixels]

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(find_package_file(PACKAGE, "shape_predictor_5_face_landmarks.dat")))
    encoder = dlib.face_recognition_model_v1(str(find_package_file(PACKAGE, WEIGHTS_FILE)))

    def dlib_reference(image: np.ndarray) -> Optional[Reference]:
        faces = detector(image, 1)
        if not faces:
            return None
        shape = predictor(image, max(faces, key=lambda r: r.area()))
        chip = dlib.get_face_chip(image, shape, 150, 0.25)
        points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
        return Reference(points, chip, np.array(encoder.compute_face_descriptor(chip)))

    references = [dlib_reference(image) for image in images]
    kept = [i for i in range(args.faces) if references[i] is not None]
    calibration = [i for i in range(args.faces, len(paths)) if references[i] is not None]
    network = DlibResNet()
    load_dlib_weights(network, packaged_weights())
    network.eval()
    template = chip_points()

    def measure(name: str, points_of: PointsFn, chip_template: np.ndarray = template) -> Row:
        started = time.perf_counter()
        found_points = [points_of(images[i]) for i in kept]
        landmark_s = time.perf_counter() - started
        points = [p for p, _ in found_points]
        started = time.perf_counter()
        chips = chip_unit.warp(pixels[kept], points, template=chip_template)
        warp_s = time.perf_counter() - started
        return score(name, landmark_s, warp_s, sum(f for _, f in found_points), points, chip_template, chips)

    def score(name: str, landmark_s: float, warp_s: float, found: int, points: list[np.ndarray],
              chip_template: np.ndarray, chips: torch.Tensor) -> Row:
        with torch.no_grad():
            ours = network.forward_chips(chips).numpy()
        levels = (chips * 256 + chip_unit.chip_mean).permute(0, 2, 3, 1).numpy()
        distances, euclid, cosine, diffs = [], [], [], []
        for k, i in enumerate(kept):
            ref = references[i]
            distances.append(alignment_distance(similarity(chip_template, points[k]), similarity(template, ref.points)))
            diffs.append(float(np.abs(levels[k] - ref.chip.astype(np.float64)).mean()))
            euclid.append(float(np.linalg.norm(ours[k] - ref.descriptor)))
            cosine.append(1 - float(ours[k] @ ref.descriptor / np.linalg.norm(ours[k]) / np.linalg.norm(ref.descriptor)))
        n = len(kept)
        return Row(name, landmark_s / n * 1000, (landmark_s + warp_s) / n * 1000, found, distances,
                   float(np.mean(diffs)), euclid, cosine)

    rows = []
    for name, source in LANDMARK_SOURCES.items():
        marker = DlibLandmarks(source)
        rows.append(measure(f"{name}: {source.describe()}", lambda image, m=marker: m(image)))
    options = [LandmarkSource(detect=False), LandmarkSource(upsample=0)] + [LandmarkSource(upsample=0, detect_side=side) for side in args.sides]
    for source in (o for o in options if o not in LANDMARK_SOURCES.values()):
        marker = DlibLandmarks(source)
        rows.append(measure(f"(option) {source.describe()}", lambda image, m=marker: m(image)))
    if not args.no_mtcnn:
        rows.append(mtcnn_row(images, kept, calibration, references, template, measure))
    if any(load_image(paths[i]).size != (args.image_size, args.image_size) for i in kept):
        rows.append(original_row(paths, kept, references, args.image_size, template, dlib_reference))
    print(f"{len(kept)} of {args.faces} SCUT-FBP5500 {args.split} test faces with a dlib reference (detector(img, 1)), "
          f"{args.image_size} px, torch threads {args.threads}\n")
    print("| landmark source | ms/face landmarks | ms/face chip | found | landmark dist mean (max), chip px "
          "| chip abs diff, 0-255 | descriptor Euclid median / p95 / max | cosine dist median |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        e = sorted(r.euclid)
        p95 = e[min(len(e) - 1, int(round(0.95 * (len(e) - 1))))]
        print(f"| {r.name} | {r.landmark_ms:.1f} | {r.chip_ms:.1f} | {r.found}/{len(kept)} | "
              f"{np.mean(r.distances):.2f} ({max(r.distances):.2f}) | {r.chip_diff:.2f} | "
              f"{statistics.median(e):.4f} / {p95:.4f} / {e[-1]:.4f} | {statistics.median(r.cosine):.5f} |")


def alignment_distance(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance, in reference-chip pixels, between dlib's template points as the candidate's
    chip->image map places them and where they sit in the reference chip."""
    q = chip_points()
    in_image = q @ candidate[:, :2].T + candidate[:, 2]
    full = np.vstack([reference, [0, 0, 1]])
    back = (np.linalg.inv(full) @ np.hstack([in_image, np.ones((len(q), 1))]).T).T[:, :2]
    return float(np.linalg.norm(back - q, axis=1).mean())


def mtcnn_row(images, kept, calibration, references, template, measure) -> Row:
    """MTCNN's five points onto their mean place in dlib's chip (measured on the calibration faces);
    a face MTCNN misses gets the whole-image dlib landmarks' alignment."""
    from PIL import Image

    from orderlearn.data.alignment import MtcnnDetector, faces_in

    mtcnn, whole = MtcnnDetector(), DlibLandmarks(LandmarkSource(detect=False))

    def mtcnn_points(image: np.ndarray) -> Optional[np.ndarray]:
        faces = faces_in(mtcnn, Image.fromarray(image))
        return faces[0].landmarks if faces else None

    def points_of(image: np.ndarray) -> tuple[np.ndarray, bool]:
        found = mtcnn_points(image)
        if found is not None:
            return found, True
        fallback = similarity(template, whole(image)[0])  # the MTCNN template's points where dlib's alignment puts them
        return mtcnn_template @ fallback[:, :2].T + fallback[:, 2], False

    placed = []
    for i in calibration:
        found = mtcnn_points(images[i])
        if found is not None:
            to_chip = np.linalg.inv(np.vstack([similarity(template, references[i].points), [0, 0, 1]]))
            placed.append((to_chip @ np.hstack([found, np.ones((5, 1))]).T).T[:, :2])
    if not placed:
        raise SystemExit("mtcnn: no face found on any calibration face (or pass --no-mtcnn)")
    mtcnn_template = np.mean(placed, axis=0)
    row = measure(f"(option) MTCNN 5 points, template from {len(placed)} faces", points_of, mtcnn_template)
    return row


def original_row(paths, kept, references, image_size, template, dlib_reference) -> Row:
    """Context: dlib-bin's whole pipeline on the full-size original file against the reference."""
    started = time.perf_counter()
    ours = [dlib_reference(np.asarray(load_image(paths[i]))) for i in kept]
    seconds = time.perf_counter() - started
    distances, euclid, cosine, diffs, found = [], [], [], [], 0
    for i, got in zip(kept, ours):
        if got is None:
            continue
        found += 1
        ref = references[i]
        width = load_image(paths[i]).size[0]
        points = got.points * image_size / width
        distances.append(alignment_distance(similarity(template, points), similarity(template, ref.points)))
        diffs.append(float(np.abs(got.chip.astype(np.float64) - ref.chip.astype(np.float64)).mean()))
        euclid.append(float(np.linalg.norm(got.descriptor - ref.descriptor)))
        cosine.append(1 - float(got.descriptor @ ref.descriptor / np.linalg.norm(got.descriptor) / np.linalg.norm(ref.descriptor)))
    ms = seconds / len(kept) * 1000
    return Row("(context) dlib-bin on the original file, its own chip and descriptor", ms, ms, found, distances,
               float(np.mean(diffs)), euclid, cosine)


if __name__ == "__main__":
    main()
