"""Loading single modules of StreamSpeech's `researches/` code (for the fixture scripts).

The packages' __init__ files import the whole model zoo; the module files themselves only need
fairseq and each other, so they are loaded one by one under their dotted names.
"""
import importlib.util
import sys
import types
from pathlib import Path


def load_module(repo: Path, dotted: str):
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    spec = importlib.util.spec_from_file_location(dotted, repo / "researches" / ("/".join(parts) + ".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[dotted] = module
    setattr(sys.modules[".".join(parts[:-1])], parts[-1], module)
    spec.loader.exec_module(module)
    return module


ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "translator/tests/fixtures"


def streamspeech_checkout() -> Path:
    """The fixture scripts' one argument, `--streamspeech PATH` (a checkout of
    ictnlp/StreamSpeech); also turns oneDNN off (its ConvTranspose1d is ~1000x slower here)."""
    import argparse

    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--streamspeech", required=True, type=Path)
    torch.backends.mkldnn.enabled = False
    return ap.parse_args().streamspeech
