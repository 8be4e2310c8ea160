"""Checks across config sections that a JSON schema cannot express, and the experiment grid."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value refers to something that does not exist; the message names the key."""


def check_references(config: dict) -> None:
    """Experiments, train sets, figures and the prompt tokenizer must name defined things."""
    models, sets, langs = config["models"], config["train_sets"], set(config["languages"])
    if "base" in sets:
        raise ConfigError("train_sets.base: 'base' is reserved for the untuned model")
    for i, exp in enumerate(config["experiments"]):
        where = f"experiments[{i}]"
        if exp["model"] not in models:
            raise ConfigError(f"{where}.model: {exp['model']!r} is not in models ({', '.join(models)})")
        if exp["train_set"] != "base" and exp["train_set"] not in sets:
            allowed = ", ".join(["base", *sets])
            raise ConfigError(f"{where}.train_set: {exp['train_set']!r}; allowed: {allowed}")
        for lang in exp["languages"]:
            if lang not in langs:
                raise ConfigError(f"{where}.languages: {lang!r} is not in languages")
    for name, spec in sets.items():
        for lang in spec["mixture"]:
            if lang not in langs:
                raise ConfigError(f"train_sets.{name}.mixture: {lang!r} is not in languages")
    tok = config["prompts"]["tokenizer"]
    if tok is not None and tok not in models:
        raise ConfigError(f"prompts.tokenizer: {tok!r} is not in models ({', '.join(models)})")
    build = config["data"]["build"]
    if build["instructions"] != "template":
        llm = build["llm"]
        scorer = llm["scorer"] or llm["model"]
        if scorer not in models:
            raise ConfigError(
                f"data.build.llm.scorer: {scorer!r} is not in models (needed for {build['instructions']!r})"
            )
        if build["instructions"] == "hf" and llm["model"] not in models:
            raise ConfigError(f"data.build.llm.model: {llm['model']!r} is not in models")
    retrieval = config["prompts"]["retrieval"]
    rerank = retrieval.get("reranker", {})
    for key, name in (("model", retrieval.get("model")), ("reranker.model", rerank.get("model"))):
        if name is not None and name not in models:
            raise ConfigError(f"prompts.retrieval.{key}: {name!r} is not in models ({', '.join(models)})")
    if any("rerank_3shot" in exp.get("prompt_modes", ()) for exp in config["experiments"]):
        if not (rerank.get("model") or rerank.get("model_path")):
            raise ConfigError("prompts.retrieval.reranker: rerank_3shot needs a model or model_path")
        if retrieval["embedder"] == "bm25":
            raise ConfigError("prompts.retrieval.embedder: rerank_3shot reranks embedding hits; not bm25")
    for i, exp in enumerate(config["experiments"]):
        if "adapter" in models[exp["model"]] and exp["train_set"] != "base":
            raise ConfigError(
                f"experiments[{i}].train_set: {exp['model']!r} has an adapter trained elsewhere "
                "(models.*.adapter): only train_set base; to fine-tune, use an entry without adapter"
            )
        if models[exp["model"]]["source"] == "openai" and exp["train_set"] != "base":
            raise ConfigError(
                f"experiments[{i}].train_set: {exp['model']!r} is an API model (source openai); "
                "only train_set base"
            )
    for name in config.get("preflight", {}).get("api_models", []):
        if models.get(name, {}).get("source") != "openai":
            raise ConfigError(f"preflight.api_models: {name!r} is not a models entry with source openai")
    for name, model in models.items():
        if "adapter" in model and model["source"] == "openai":
            raise ConfigError(f"models.{name}.adapter: an API model (source openai) takes no adapter")
        shared = model.get("tokenizer_of")
        if shared is not None and (shared not in models or models[shared]["source"] in ("openai", "tiny_encoder")):
            raise ConfigError(f"models.{name}.tokenizer_of: {shared!r} is not a causal LM in models")
        need = {
            "hub": ("repo", "revision"),
            "local": ("path",),
            "openai": ("base_url", "api_model"),
        }.get(model["source"], ())
        for key in need:
            if key not in model:
                raise ConfigError(f"models.{name}.{key}: required for source {model['source']!r}")


def experiment_cells(config: dict) -> list[dict]:
    """Every (model, train_set, lang, level, mode) cell of the experiments, deduplicated."""
    cells, seen = [], set()
    for exp in config["experiments"]:
        for lang in exp["languages"]:
            for level in exp.get("levels", [1, 2, 3]):
                for mode in exp.get("prompt_modes", ["zero_shot", "retrieval_3shot"]):
                    key = (exp["model"], exp["train_set"], lang, level, mode)
                    if key not in seen:
                        seen.add(key)
                        cells.append(dict(zip(("model", "train_set", "lang", "level", "mode"), key)))
    return cells


def write_config(config: dict, path: str) -> None:
    """The effective config as YAML, keys sorted, so that two runs can be compared with diff."""
    import yaml

    from .files import atomic_open

    with atomic_open(path) as fh:
        yaml.safe_dump(config, fh, sort_keys=True, allow_unicode=True)


def figure_families(config: dict) -> list[str]:
    """The figure families that at least one experiment cell fills (no figure without data)."""
    cells, figures = experiment_cells(config), config["figures"]
    battle = {figures["model_battle_train_set"], "base"}
    cross = figures["cross_lingual"]
    series, experts = set(cross["series"].values()), set(cross["experts"].items())
    fills = {
        "model_battle": lambda c: c["train_set"] in battle and c["lang"] == figures["model_battle_language"],
        "scaling": lambda c: c["train_set"] in figures["scaling"].get(c["lang"], {}),
        "cross_lingual": lambda c: c["level"] == 3
        and (c["train_set"] in series or (c["lang"], c["train_set"]) in experts),
        "parity": lambda c: True,
        "structural": lambda c: True,
    }
    return [family for family, fill in fills.items() if any(fill(c) for c in cells)]
