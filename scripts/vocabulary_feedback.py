"""Print what a checkpoint understands phrasings as (``rrsis_geo.explain``), one line each.

    python scripts/vocabulary_feedback.py                      # the default model, ten phrasings
    python scripts/vocabulary_feedback.py --checkpoint DIR "the pond" "solar panels"

Five phrasings the default model knows (its training words or close paraphrases) and five it
does not; the figures are cosine similarities of the model's own MiniLM sentence embeddings.
"""

from __future__ import annotations

import argparse

KNOWN = ["building", "houses", "highway", "trees", "buildings along the road"]
UNKNOWN = ["swimming pool", "airplane", "solar panels", "ship", "parked cars"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phrasings", nargs="*", default=KNOWN + UNKNOWN)
    parser.add_argument("--checkpoint", help="checkpoint directory or installed name (default: the default model)")
    args = parser.parse_args()

    import rrsis_geo
    from rrsis_geo.scaleplan import plan_expressions

    segmenter = rrsis_geo.load_model(args.checkpoint, device="cpu")
    print(f"model {segmenter.name}; threshold {rrsis_geo.explain('x', segmenter=segmenter).threshold}")
    for plan in plan_expressions(segmenter, args.phrasings):
        mark = "ok  " if plan.explanation.known else "WARN"
        scale = f"{plan.gsd_m:g} m/px" if plan.gsd_m else "scene GSD"
        print(f"{mark} {plan.explanation.message}; runs at {scale}")


if __name__ == "__main__":
    main()
