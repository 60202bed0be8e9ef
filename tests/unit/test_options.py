"""planning/options.py: the option tables and an argv resolver that agrees with argparse."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import pytest

from sdxl_tui.formats.cmdline import interpreter_from_prefix, python_command_from_prefix
from sdxl_tui.formats.optiontable import (
    SD1_SCRIPT,
    SDXL_SCRIPT,
    OptionTable,
    int_or_float,
    load_packaged_table,
    suggest,
)
from sdxl_tui.planning.options import (
    check_config_value,
    load_table_from_checkout,
    resolve_argv,
    table_from_help,
)

CARD_OPTIONS = ["--dataset_config", "ds.toml", "--pretrained_model_name_or_path", "sd_xl_base_1.0.safetensors", "--output_dir", "out", "--output_name", "luca_sdxl_v1", "--network_module", "networks.lora", "--network_dim", "64", "--network_alpha", "32", "--learning_rate", "0.0003", "--text_encoder_lr", "0.000201", "--unet_lr", "0.0003", "--max_train_epochs", "12", "--save_every_n_epochs", "2", "--save_model_as", "safetensors", "--save_precision", "fp16", "--mixed_precision", "fp16", "--gradient_checkpointing", "--gradient_accumulation_steps", "2", "--optimizer_type", "AdamW8bit", "--lr_scheduler", "cosine_with_restarts", "--lr_scheduler_num_cycles", "3", "--lr_warmup_steps", "100", "--logging_dir", "out/logs", "--log_with", "tensorboard", "--seed", "42", "--clip_skip", "2", "--cache_latents", "--cache_latents_to_disk", "--max_data_loader_n_workers", "8", "--persistent_data_loader_workers", "--xformers", "--max_token_length", "225", "--bucket_reso_steps", "64", "--bucket_no_upscale"]


@pytest.fixture(scope="module")
def sdxl() -> OptionTable:
    return load_packaged_table(SDXL_SCRIPT)


def _argparse_from(table: OptionTable) -> argparse.ArgumentParser:
    """A real argparse parser built from the table: the oracle for the resolver."""
    parser = argparse.ArgumentParser(prog=table.script, exit_on_error=False, add_help=False)
    types = {"int": int, "float": float, "int_or_float": int_or_float, "str": str, "Path": str, None: str}
    for spec in table.options:
        if spec.kind == "flag":
            parser.add_argument(*spec.options, dest=spec.dest, action="store_true")
        else:
            kw = {"dest": spec.dest, "type": types[spec.type]}
            if spec.choices is not None:
                kw["choices"] = list(spec.choices)
            if spec.nargs:
                kw["nargs"] = spec.nargs
            parser.add_argument(*spec.options, **kw)
    return parser


def test_packaged_tables_match_the_reference(sdxl: OptionTable) -> None:
    sd1 = load_packaged_table(SD1_SCRIPT)
    assert len(sdxl.options) == 196 and len(sd1.options) == 193  # REF §5.1
    assert sdxl.by_dest("cache_text_encoder_outputs") is not None
    assert sd1.by_dest("cache_text_encoder_outputs") is None
    assert sdxl.by_string("--lowvram") is None and sdxl.by_string("--lowram") is not None


def test_card_command_parses_like_sd_scripts(sdxl: OptionTable) -> None:
    parsed = resolve_argv(CARD_OPTIONS, sdxl)
    assert parsed.problems == ()
    assert parsed.values["text_encoder_lr"] == [0.000201]
    assert parsed.values["network_alpha"] == 32.0 and isinstance(parsed.values["network_alpha"], float)
    assert parsed.values["max_token_length"] == 225
    assert parsed.values["lr_warmup_steps"] == 100 and isinstance(parsed.values["lr_warmup_steps"], int)
    assert "resolution" not in parsed.values and "enable_bucket" not in parsed.values


@pytest.mark.parametrize(
    "argv",
    [
        CARD_OPTIONS,
        ["--lear", "1e-4", "--network_dim=32"],
        ["--text_encoder_lr", "1e-4", "2e-4", "--xformers"],
        ["--text_encoder_lr", "--xformers"],
        ["--noise_offset", "-0.05", "--lr_warmup_steps", "10%"],
        ["--lr_warmup_steps", "0.1", "--optimizer_args", "weight_decay=0.1", "betas=0.9,0.99"],
        ["--max_token_length", "150", "--save_precision", "bf16"],
    ],
)
def test_resolver_agrees_with_argparse_on_valid_input(sdxl: OptionTable, argv: list[str]) -> None:
    expected = vars(_argparse_from(sdxl).parse_args(argv))
    parsed = resolve_argv(argv, sdxl)
    assert [p for p in parsed.problems if p.severity == "error"] == []
    for dest, value in parsed.values.items():
        assert expected[dest] == value, dest


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--net", "x"], "ambiguous-option"),
        (["--network_dim", "sixty"], "bad-value"),
        (["--max_token_length", "100"], "bad-value"),
        (["--mixed_precision", "fp32"], "bad-value"),
        (["--network_dim"], "missing-value"),
        (["--batch_size", "2"], "unknown-option"),
        (["stray"], "stray-argument"),
    ],
)
def test_resolver_rejects_what_argparse_rejects(sdxl: OptionTable, argv: list[str], code: str) -> None:
    parser = _argparse_from(sdxl)
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        # parse_args reports unknown arguments through error() -> SystemExit
        _, extras = parser.parse_known_args(argv)
        if extras:
            raise SystemExit(2)
    parsed = resolve_argv(argv, sdxl)
    assert code in [p.code for p in parsed.problems if p.severity == "error"]


def test_abbreviation_is_accepted_with_a_note(sdxl: OptionTable) -> None:
    parsed = resolve_argv(["--gradient_check", "--unet", "1e-4"], sdxl)
    assert parsed.values == {"gradient_checkpointing": True, "unet_lr": 1e-4}
    assert [p.code for p in parsed.problems] == ["abbreviated-option", "abbreviated-option"]


def test_flag_with_value_and_repeated_option(sdxl: OptionTable) -> None:
    parsed = resolve_argv(["--xformers=1", "--seed", "1", "--seed", "2"], sdxl)
    codes = {p.code: p.severity for p in parsed.problems}
    assert codes == {"flag-with-value": "error", "repeated-option": "warning"}
    assert parsed.values["seed"] == 2


def test_unknown_options_get_did_you_mean(sdxl: OptionTable) -> None:
    parsed = resolve_argv(["--batch_size", "2", "--lowvram", "--medvram", "--netwrok_dim", "8"], sdxl)
    by_opt = {p.option: p for p in parsed.problems}
    assert set(by_opt) == {"--batch_size", "--lowvram", "--medvram", "--netwrok_dim"}
    assert "--train_batch_size" in by_opt["--batch_size"].fix and "dataset TOML" in by_opt["--batch_size"].fix
    assert "--lowram" in by_opt["--lowvram"].fix and "--gradient_checkpointing" in by_opt["--lowvram"].fix
    assert "no such option" in by_opt["--medvram"].message
    assert "did you mean --network_dim?" in by_opt["--netwrok_dim"].fix
    assert parsed.extras == ("--batch_size", "2", "--lowvram", "--medvram", "--netwrok_dim", "8")
    assert "unrecognized arguments: --batch_size 2" in by_opt["--batch_size"].message


def test_module_level_suggest_for_log_alerts() -> None:
    assert "--lowram" in (suggest("--lowvram") or "")
    assert "do not exist" in (suggest("--text_encoder_lr2") or "")
    assert suggest("--network_dim") is None
    assert suggest("--zzzzzzzzzz") is None


def test_int_or_float() -> None:
    assert int_or_float("10%") == pytest.approx(0.1)
    assert int_or_float("100") == 100 and isinstance(int_or_float("100"), int)
    assert int_or_float("0.5") == 0.5
    with pytest.raises(ValueError):
        int_or_float("ten")


def test_config_values_are_checked_without_argparse(sdxl: OptionTable) -> None:
    def spec(dest: str):
        s = sdxl.by_dest(dest)
        assert s is not None
        return s

    assert check_config_value(spec("learning_rate"), 3e-4) is None
    assert "number" in (check_config_value(spec("learning_rate"), "3e-4") or "")
    assert "integer" in (check_config_value(spec("network_dim"), 64.5) or "")
    assert check_config_value(spec("text_encoder_lr"), [1e-4]) is None
    assert check_config_value(spec("text_encoder_lr"), 1e-4) is None  # sd-scripts accepts a scalar from TOML
    assert "list" in (check_config_value(spec("network_args"), "conv_dim=4") or "")
    assert "true/false" in (check_config_value(spec("xformers"), "yes") or "")
    assert "not one of" in (check_config_value(spec("mixed_precision"), "fp32") or "")


def test_interpreter_from_prefix() -> None:
    assert interpreter_from_prefix(["/env/bin/python3.10"]) == "/env/bin/python3.10"
    assert interpreter_from_prefix(["conda", "run", "-n", "x", "python"]) is None


_FAKE_TRAINER = textwrap.dedent(
    """
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--network_dim", type=int, default=None, help="rank")
    p.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--text_encoder_lr", type=float, nargs="*", default=None)
    p.add_argument("--brand_new_option", action="store_true", help="only in this checkout")
    p.add_argument("--a_very_long_option_name_that_wraps", type=str, default=None, help="x" * 90)
    p.parse_args()
    """
)


def test_table_from_a_checkouts_help(tmp_path: Path) -> None:
    (tmp_path / "sdxl_train_network.py").write_text(_FAKE_TRAINER)
    cache = tmp_path / "cache"
    table, note = load_table_from_checkout(tmp_path, SDXL_SCRIPT, python=sys.executable, timeout=30, cache_dir=cache)
    assert note is None and "(cached)" not in table.source
    again, _ = load_table_from_checkout(tmp_path, SDXL_SCRIPT, python=sys.executable, cache_dir=cache)
    assert again.source.endswith("(cached)") and again.options == table.options
    # a changed script is a different checkout state: asked again
    (tmp_path / "sdxl_train_network.py").write_text(_FAKE_TRAINER.replace("brand_new_option", "renamed_option"))
    changed, _ = load_table_from_checkout(tmp_path, SDXL_SCRIPT, python=sys.executable, cache_dir=cache)
    assert changed.by_dest("renamed_option") is not None and changed.by_dest("brand_new_option") is None
    assert table.by_dest("brand_new_option") is not None and table.by_dest("brand_new_option").kind == "flag"
    assert table.by_dest("clip_skip") is None  # this checkout has no clip_skip
    dim = table.by_dest("network_dim")
    assert dim is not None and dim.type == "int"  # type borrowed from the packaged table
    te = table.by_dest("text_encoder_lr")
    assert te is not None and te.nargs == "*"
    assert table.by_dest("mixed_precision").choices == ("no", "fp16", "bf16")  # type: ignore[union-attr]
    assert table.by_dest("a_very_long_option_name_that_wraps") is not None
    parsed = resolve_argv(["--clip_skip", "2", "--brand_new_option"], table)
    assert [p.code for p in parsed.problems] == ["unknown-option"]


def test_checkout_failures_fall_back_with_a_note(tmp_path: Path) -> None:
    table, note = load_table_from_checkout(tmp_path, SDXL_SCRIPT, python=sys.executable, use_cache=False)
    assert note and "not found" in note and len(table.options) == 196
    (tmp_path / "sdxl_train_network.py").write_text("import sys\nsys.exit('ImportError: no module named torch')\n")
    table, note = load_table_from_checkout(tmp_path, SDXL_SCRIPT, python=sys.executable, timeout=30,
                                           cache_dir=tmp_path / "cache")
    assert note and "exited 1" in note and "torch" in note and len(table.options) == 196


def test_help_parser_rejects_non_help_text() -> None:
    with pytest.raises(ValueError):
        table_from_help("Traceback (most recent call last):\n  boom\n", SDXL_SCRIPT)


def test_python_command_from_prefix() -> None:
    conda = ["conda", "run", "--no-capture-output", "-n", "kohya_ss", "python"]
    assert python_command_from_prefix(["nohup", *conda]) == conda
    assert python_command_from_prefix(["accelerate", "launch", "--num_cpu_threads_per_process", "1"]) is None
