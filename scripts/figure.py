"""Rules figure and figure_paper: one figure family, from our metrics table or the paper's."""

import pandas as pd

from apipack import figures as F
from apipack.languages import LANG_KEYS
from apipack.rulelog import logged

with logged(snakemake):
    family, cfg = snakemake.wildcards.family, snakemake.params.figures
    ref = F.load_reference(snakemake.input.reference)
    ours = snakemake.params.source == "ours"
    if ours:
        df = F.our_results(pd.read_csv(snakemake.input.cells), cfg)
        what, lang = "our results", cfg["model_battle_language"]
        scaling_langs = list(cfg["scaling"])
        cross = cfg["cross_lingual"]["languages"]
        every = [x for x in LANG_KEYS if x in snakemake.params.languages]
    else:
        df, what, lang = ref, "published numbers (CodeLlama-13b unless named)", "python"
        scaling_langs, cross, every = ["curl", "python"], ["curl", "python", "java"], list(LANG_KEYS)
    title = f"{family.replace('_', ' ').capitalize()}: {what}"
    # Our small models show their signal in the structural host field: drawn beside the paper's.
    host = {"host_acc": "Host match (structural)"} if ours else {}
    makers = {
        "model_battle": lambda: F.model_battle(df, lang, title),
        "scaling": lambda: F.scaling(df, scaling_langs, title, {**F.METRICS, **host}),
        "cross_lingual": lambda: F.cross_lingual(
            df, cross, every, title, {"api_call_acc": "API-call acc.", **host}
        ),
        "parity": lambda: F.parity(df, ref, title),
        "structural": lambda: F.structural(df, title),
    }
    if family not in makers or (family in ("parity", "structural") and not ours):
        raise ValueError(f"unknown figure family {family!r} for {what}")
    F.draw(makers[family], snakemake.output.png, snakemake.output.pdf, snakemake.output.data)
    print(f"drew {family} from {what}: {len(df)} rows")
