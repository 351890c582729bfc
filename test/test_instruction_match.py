"""model/instruction_match.py and ros/instruction_check.py: what an instruction is heard as, and how far it is
from every wording the checkpoint was trained on."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from deer_vla.model.instruction_match import InstructionMatcher, token_table, trained_wordings
from deer_vla.ros.instruction_check import OK, WARN, InstructionCheck

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "deer_vla" / "assets" / "default_checkpoint"


@pytest.fixture(scope="module")
def default_runner():
    if not (DEFAULT / "config.json").is_file():
        pytest.skip("needs the shipped default checkpoint")
    from deer_vla.model.runner import PolicyRunner

    torch.set_num_threads(1)
    return PolicyRunner.from_checkpoint(DEFAULT)


def test_the_shipped_checkpoint_hears_held_out_wordings_as_their_task_and_other_requests_as_unfamiliar(
        default_runner):
    """On the real wordllama table (the shipped default's own, fine-tuned) a trained wording is itself, the ten
    tasks' never-trained wordings land on their task above the default floor (0.45), and requests for things
    the robot was never shown fall under it."""
    from deer_vla.sim.tasks import TASK_SUITE

    check = InstructionCheck.for_runner(default_runner)
    matcher = check.matcher
    assert matcher is not None and "drawer-open" in matcher.tasks
    same = matcher.match("open the drawer")
    assert (same.task, same.nearest) == ("drawer-open", "open the drawer") and same.similarity == pytest.approx(1.0)
    assert matcher.match("OPEN   the Drawer").similarity == pytest.approx(1.0)  # as the model reads it
    held_out = [(task.name, text) for task in TASK_SUITE.values() for text in task.heldout_instructions]
    assert len(held_out) >= 60
    matches = [matcher.match(text) for _, text in held_out]
    assert min(m.similarity for m in matches) >= 0.45
    right = sum(m.task.removesuffix("-shared") == task for (task, _), m in zip(held_out, matches))
    assert right >= 0.93 * len(held_out)  # measured 66 of 70 (65 before address words were dropped)
    for request in ("make me a sandwich", "fly to the moon", "tell me a joke", "fold the towel", "asdf qwerty"):
        assert matcher.match(request).similarity < 0.45, request


def test_a_damaged_record_keeps_what_is_usable_and_an_empty_one_is_refused():
    """A lone surrogate (a record written from undecodable bytes) or a text of zero-width characters is left out
    like a number: one such wording switched the whole comparison off ("instruction is not valid text")."""
    record = {"a": ["open it", 3, "", "\ud800bad", "\u200b\u200b"], "b": "not a list", 7: ["x"], "c": []}
    assert trained_wordings(record) == {"a": ["open it"]}
    assert trained_wordings(["open it"]) == {} and trained_wordings(None) == {}
    with pytest.raises(ValueError, match="no trained instructions"):
        InstructionMatcher(object(), torch.zeros(4, 2), {"a": [1, 2]})


def test_the_table_is_the_input_rows_before_any_projection():
    from deer_vla.model.config import TextConfig
    from deer_vla.model.text import TokenEmbedder

    embedding = torch.nn.Embedding(7, 3)
    assert token_table(embedding) is embedding.weight
    cfg = TextConfig(source="local", vocab_size=5, embed_dim=4, sha256="0" * 64, trainable=True)
    embedder = TokenEmbedder(cfg, hidden=8)
    assert tuple(token_table(embedder).shape) == (5, 4)  # not the 8-wide projection
    with pytest.raises(TypeError, match="no token-embedding table"):
        token_table(torch.nn.Linear(2, 2))


def _with_record(src: Path, dst: Path, record: object) -> Path:
    shutil.copytree(src, dst)
    (dst / "extra.json").write_text(json.dumps({"training": {"instructions": record}}))
    return dst


def test_a_checkpoint_without_a_readable_record_is_not_compared(tiny_checkpoint, tmp_path):
    from deer_vla.model.runner import PolicyRunner

    none = InstructionCheck.for_runner(PolicyRunner.from_checkpoint(tiny_checkpoint))
    assert none.matcher is None and "records no trained instructions" in none.why_not
    assert none.status("open the drawer", "warn", 0.45)[:2] == (OK, none.why_not)
    assert not none.judge("open the drawer", "warn", 0.45).unfamiliar
    broken = _with_record(tiny_checkpoint, tmp_path / "broken", None)
    (broken / "extra.json").write_text("{not json")
    check = InstructionCheck.for_runner(PolicyRunner.from_checkpoint(broken))
    assert check.matcher is None and "cannot be read" in check.why_not
    useless = _with_record(tiny_checkpoint, tmp_path / "useless", {"reach": [5]})
    check = InstructionCheck.for_runner(PolicyRunner.from_checkpoint(useless))
    assert check.matcher is None and "no trained instructions" in check.why_not


def test_the_check_compares_with_the_record_the_runner_read_at_load(tiny_checkpoint, tmp_path):
    """One read of the training record per load: the instruction check, the trained words and the gripper note
    take the runner's, so a record changed or broken on disk after the weights loaded does not make the check
    disagree with the words the runner reads instructions by."""
    from deer_vla.model.runner import PolicyRunner

    ckpt = _with_record(tiny_checkpoint, tmp_path / "ckpt", {"push": ["push the puck to the goal"]})
    runner = PolicyRunner.from_checkpoint(ckpt)
    (ckpt / "extra.json").write_text("{not json")
    check = InstructionCheck.for_runner(runner)
    assert check.matcher is not None and check.matcher.tasks == ["push"]
    assert runner.trained_words is not None and "puck" in runner.trained_words.words
    assert InstructionCheck.for_runner(runner.fork()).matcher is not None
    broken = PolicyRunner.from_checkpoint(ckpt)  # a new load reads it again, once
    assert broken.training == {} and broken.training_error is not None
    assert "cannot be read" in (InstructionCheck.for_runner(broken).why_not or "")


def test_the_status_judges_the_current_instruction_against_the_floor_now(tiny_checkpoint, tmp_path):
    """A word the tokenizer does not know is its unknown token, left out like the other special tokens: a text
    of unknown words is similarity 0 with every wording, whatever the random weights."""
    from deer_vla.model.runner import PolicyRunner

    ckpt = _with_record(tiny_checkpoint, tmp_path / "ckpt", {"reach": ["reach the red goal"],
                                                             "push": ["push the puck to the goal"]})
    check = InstructionCheck.for_runner(PolicyRunner.from_checkpoint(ckpt))
    assert check.matcher is not None and check.matcher.tasks == ["push", "reach"]
    assert check.status(None, "warn", 0.45)[:2] == (OK, "no instruction yet")
    assert check.status(None, "warn", 0.45, "'stop' was refused")[:2] == (OK, "none in force: 'stop' was refused")
    familiar = check.judge("push the puck to the goal", "warn", 0.45)
    assert not familiar.unfamiliar and familiar.match is not None and familiar.match.task == "push"
    level, message, values = check.status("push the puck to the goal", "warn", 0.45)
    assert level == OK and message.startswith("heard as push") and dict(values)["similarity"] == "1.000"
    strange = check.judge("zebra xylophone", "warn", 0.45)
    assert strange.unfamiliar and strange.match is not None and strange.match.similarity == 0.0
    assert strange.names_nothing and strange.refused("warn")  # no word of a trained wording: no task at all
    level, message, values = check.status("zebra xylophone", "warn", 0.45)
    assert level == WARN and "names nothing this checkpoint was trained on" in message
    assert dict(values)["unfamiliar instructions"] == "1"
    level, message, _ = check.status("reach the red puck", "warn", 1.0)
    assert level == WARN and "unlike every instruction" in message and "< min_instruction_similarity 1" in message
    assert not check.judge("reach the red puck", "warn", 1.0, count=False).refused("warn")  # trained words: runs
    assert check.judge("reach the red puck", "refuse", 1.0, count=False).refused("refuse")
    assert check.status("reach the red puck", "warn", 0.0)[0] == OK  # a floor lowered at run time counts at once
    assert check.status("zebra xylophone", "off", 0.45)[:2] == (OK, "not compared (unfamiliar_instruction: off)")
    assert check.judge("zebra xylophone", "off", 0.45).match is None and check.unfamiliar == 1


def test_the_matcher_reads_only_the_tokens_the_model_reads(tiny_checkpoint, tmp_path):
    """An instruction longer than lm.max_text_len tokens is judged on what the model reads, its start: a text
    that starts with 'drawer' and goes on with 'puck' is a drawer instruction to the model."""
    from deer_vla.model.runner import PolicyRunner

    runner = PolicyRunner.from_checkpoint(tiny_checkpoint)
    limit = runner.model.config.lm.max_text_len
    matcher = InstructionMatcher.from_runner(runner, {"open": ["drawer"], "push": ["puck"]})
    text = "drawer " * (limit + 2) + "puck " * (20 * limit)
    heard = matcher.match(text)
    assert heard.task == "open" and heard.similarity == pytest.approx(1.0)


def test_words_that_only_address_the_robot_do_not_pick_the_task(default_runner):
    """"hey robot, close the drawer" was heard as drawer-open, nearest the one wording that names the robot ("pull
    the drawer out toward the robot", 0.77): address words are left out of both sides of the comparison. Where
    the model reads only the start of a long text, the matcher judges that start as it is (no word dropped)."""
    from deer_vla.core.instruction_text import without_address

    check = InstructionCheck.for_runner(default_runner)
    matcher = check.matcher
    assert matcher is not None
    for text in ("hey robot, close the drawer", "close the drawer, robot", "Robot: close the drawer please"):
        heard = matcher.match(text)
        assert heard.task.removesuffix("-shared") == "drawer-close" and heard.similarity > 0.95, (text, heard)
    assert matcher.match("robot, turn the water on").task.removesuffix("-shared") == "faucet-open"
    assert without_address("OK robot, please close it") == ", close it"
    assert without_address("please!") == "please!" and without_address("okra, robots") == "okra, robots"
    limit = default_runner.model.config.lm.max_text_len
    two = InstructionMatcher.from_runner(default_runner, {"open": ["the drawer"], "wave": ["please"]})
    assert two.match("please, the drawer").task == "open"  # read whole: "please" left out
    cut = two.match("please " * (limit + 2) + "the drawer")  # the model reads only the pleases
    assert cut.task == "wave" and cut.similarity == pytest.approx(1.0)


def test_a_close_call_between_two_tasks_is_said_and_a_shared_twin_is_no_other_task(default_runner):
    """"rotate the faucet handle to the left" was logged as faucet-close at 0.92, as sure as any wording, while
    faucet-open's wording was 0.91 (the policy opened it, 5 of 5): a close call is a WARN that names both; a
    twin task trained on the same wordings (faucet-close-shared) is no other task; and a plain wording is no
    close call. On the ten tasks' 70 held-out wordings 2 are (1 of them heard as the wrong task)."""
    from deer_vla.ros.instruction_check import CLOSE_CALL, Verdict
    from deer_vla.sim.tasks import TASK_SUITE

    check = InstructionCheck.for_runner(default_runner)
    matcher = check.matcher
    assert matcher is not None
    left = matcher.match("rotate the faucet handle to the left")
    assert left.task.startswith("faucet-close") and left.runner_up_task == "faucet-open"
    assert left.runner_up_similarity is not None and left.similarity - left.runner_up_similarity < CLOSE_CALL
    verdict = check.judge("rotate the faucet handle to the left", "warn", 0.45, count=False)
    assert verdict.close_call and not verdict.unfamiliar
    assert "faucet-open's 'rotate the faucet handle open' is nearly as near (0.91)" in verdict.heard(0.45)
    level, message, values = check.status("rotate the faucet handle to the left", "warn", 0.45)
    assert level == WARN and "nearly as near" in message and ("nearest other task", "faucet-open (0.913)") in values
    plain = matcher.match("turn on the faucet")
    assert plain.runner_up_task == "faucet-close" and not Verdict(plain, False).close_call  # not its -shared twin
    assert check.status("turn on the faucet", "warn", 0.45)[0] == OK
    held_out = [text for task in TASK_SUITE.values() for text in task.heldout_instructions]
    close = [text for text in held_out if Verdict(matcher.match(text), False).close_call]
    assert len(close) <= 3, close  # 2 measured


def test_a_direction_said_against_the_nearest_wording_is_a_warning(default_runner):
    """"turn off the water" was heard as faucet-open's "turn on the water" (0.89) at INFO, and "push the drawer
    out" as drawer-close at 0.97: the pooled comparison weighs one direction word little. Said at WARN, naming
    both words; a held-out wording of the ten tasks is not (none says a direction against its nearest)."""
    from deer_vla.ros.instruction_check import contradicted_direction
    from deer_vla.sim.tasks import TASK_SUITE

    check = InstructionCheck.for_runner(default_runner)
    verdict = check.judge("turn off the water", "warn", 0.45, count=False)
    assert verdict.match is not None and verdict.match.task == "faucet-open" and not verdict.close_call
    assert verdict.contradicts == ("off", "on") and verdict.doubtful
    assert "but it says 'off' where that wording says 'on': the policy may do the opposite" in verdict.heard(0.45)
    level, message, _ = check.status("push the drawer out", "warn", 0.45)
    assert level == WARN and "says 'out' where that wording says 'in'" in message
    assert check.status("turn off the faucet", "warn", 0.45)[0] == OK
    assert contradicted_direction("pull the handle down", "pull the handle up") == ("down", "up")
    assert contradicted_direction("move it up and down", "pull the handle up") is None  # says both
    held_out = [text for task in TASK_SUITE.values() for text in task.heldout_instructions]
    assert [t for t in held_out if check.judge(t, "warn", 0.45, count=False).contradicts] == []


def test_two_tasks_in_one_text_are_a_warning(default_runner):
    """"open the drawer and close the window" was heard as drawer-open (0.79) at INFO: the policy does one task,
    and nothing said the other was dropped. Two clauses each near a wording of another task are a WARN; a task
    and a stop, a purpose ("so I can see"), or a trained wording are not (on the ten tasks' held-out wordings
    one is: "coffee machine, press its button", coffee-button and button-press-topdown)."""
    from deer_vla.sim.tasks import TASK_SUITE

    check = InstructionCheck.for_runner(default_runner)
    verdict = check.judge("open the drawer and close the window", "warn", 0.45, count=False)
    assert verdict.two_tasks is not None and [m.task for m in verdict.two_tasks] == ["drawer-open", "window-close"]
    assert verdict.doubtful and "but it may ask two tasks, drawer-open and window-close" in verdict.heard(0.45)
    level, message, _ = check.status("open the drawer, then press the button", "warn", 0.45)
    assert level == WARN and "two tasks, drawer-open and button-press-topdown" in message
    for text in ("open the drawer so I can see", "close the drawer please, thank you", "open the drawer"):
        assert check.judge(text, "warn", 0.45, count=False).two_tasks is None, text
    # a clause is judged on its trained words: a word beside a clause ("simultaneously", "[op]", "by EOD") took it
    # under the cut and the two tasks ran silently as one (a helper's set k)
    for text in ("Run 12: open the drawer and press the button simultaneously.",
                 "[op] open the drawer; close the window", "Please open the drawer and also close the window by EOD."):
        assert check.judge(text, "warn", 0.45, count=False).two_tasks is not None, text
    held_out = [text for task in TASK_SUITE.values() for text in task.heldout_instructions]
    assert [t for t in held_out if check.judge(t, "warn", 0.45, count=False).two_tasks] == \
        ["coffee machine, press its button"]


def test_a_matcher_built_at_every_configure_leaves_no_memory_behind(default_runner):
    """Each configure builds a matcher with its own copy of the tokenizer, which tokenizes every trained wording:
    tokenizers keeps the memory of its word cache when the copy is deleted, and the node grew ~216 KB per
    lifecycle cycle without bound (a helper's 220 cycles). The copy has no cache now."""
    import os

    def resident_kb() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    record = default_runner.training["instructions"]
    for _ in range(10):  # allocator warm-up
        InstructionMatcher.from_runner(default_runner, record)
    before = resident_kb()
    for _ in range(40):
        InstructionMatcher.from_runner(default_runner, record)
    assert resident_kb() - before < 4000  # ~9000 KB with the cache (about 220 KB a build), ~100 KB without


def test_a_word_the_policy_never_learned_is_a_warning_that_names_it(default_runner):
    """"open the fridge" was heard as faucet-open (0.54) and "open the door" as window-open (0.51) at INFO: a
    wording match shares the verb and the article with a task's own wording, and the policy opened the tap. A
    word no trained wording has, nor a word near it, is a WARN that names it; a trained word's other form
    ("opening"), a manner ("gently"), a possessive of a trained word, the grammar of a request ("really",
    "could") and a trained wording are not. Of the ten tasks' 70 held-out wordings 6 name such a word (their
    writers' synonyms: "jab", "tuck", "draft")."""
    from deer_vla.sim.tasks import TASK_SUITE

    check = InstructionCheck.for_runner(default_runner)
    verdict = check.judge("open the fridge", "warn", 0.45, count=False)
    assert not verdict.unfamiliar and [w for w, _, _ in verdict.unknown] == ["fridge"] and verdict.doubtful
    assert verdict.unknown[0][2] < 0.4
    assert "but it names 'fridge' (nearest trained word" in verdict.heard(0.45)
    level, message, values = check.status("press the elevator button", "warn", 0.45)
    assert level == WARN and "'elevator'" in message and ("words never learned", "elevator") in values
    for text in ("could you really slide the window open gently", "opening the drawer please",
                 "press the coffee machine's button", "open the drawer"):
        assert check.judge(text, "warn", 0.45, count=False).unknown == (), text
    assert check.status("open the drawer", "warn", 0.45)[0] == OK
    held_out = [text for task in TASK_SUITE.values() for text in task.heldout_instructions]
    assert len([t for t in held_out if check.judge(t, "warn", 0.45, count=False).unknown]) <= 7  # 6 measured
    trained = [t for texts in default_runner.training["instructions"].values() for t in texts]
    assert [t for t in trained if check.judge(t, "warn", 0.45, count=False).unknown] == []


def test_words_never_learned_are_not_named_without_the_checkpoint_s_trained_words(default_runner):
    """A check built without the runner's trained words (a checkpoint that records none) names no word."""
    check = InstructionCheck(InstructionCheck.for_runner(default_runner).matcher)
    verdict = check.judge("open the fridge", "warn", 0.45, count=False)
    assert verdict.unknown == () and not verdict.doubtful


def test_a_text_naming_no_trained_word_is_refused_in_either_mode(default_runner):
    """"hello", "nope", "go to sleep" and "abre el cajón" ran the nearest task under 'warn' (under the floor, at a
    WARN): no word of theirs is in a trained wording, so they name no task; refused in 'warn' and 'refuse', not
    judged under 'off'. A text with one trained word is judged as before, and no wording of the default suite
    names nothing."""
    from deer_vla.sim.tasks import TASK_SUITE

    check = InstructionCheck.for_runner(default_runner)
    for text in ("hello", "nope", "go to sleep", "abre el cajón", "ok, thanks", "???"):
        verdict = check.judge(text, "warn", 0.45, count=False)
        assert verdict.names_nothing and verdict.refused("warn") and verdict.refused("refuse"), text
        assert "names nothing this checkpoint was trained on" in verdict.heard(0.45)
        assert not check.judge(text, "off", 0.45, count=False).refused("off")
    fridge = check.judge("open the fridge", "warn", 0.45, count=False)
    assert not fridge.names_nothing and not fridge.refused("warn")  # "open": a WARN naming 'fridge' instead
    wordings = [t for task in TASK_SUITE.values() for t in (*task.train_instructions, *task.heldout_instructions)]
    assert [t for t in wordings if check.judge(t, "warn", 0.45, count=False).names_nothing] == []


def test_words_never_learned_are_looked_for_in_what_the_model_reads_as_it_reads_them(default_runner):
    """Full-width letters ("ＯＰＥＮ the ｆｒｉｄｇｅ", read by the tokenizer as "open the fridge") had no WARN; a word
    past the tokens the model reads had one ("open the drawer" eleven times, then "the fridge": the same match
    whether the tail is there or not); nouns in -ly ("jelly", "lily") were taken for manners. The trained
    words are embedded at configure, and the English word list is read only for a word not trained."""
    from deer_vla.model.instruction_words import TrainedWords

    check = InstructionCheck.for_runner(default_runner)
    assert [w for w, _, _ in check.judge("ＯＰＥＮ the ｆｒｉｄｇｅ", "warn", 0.45, count=False).unknown] == ["fridge"]
    assert check.judge("open the drawer " * 11 + "and then the fridge", "warn", 0.45, count=False).unknown == ()
    assert check.judge("open the fridge " + "open the drawer " * 11, "warn", 0.45, count=False).unknown
    for text, word in (("open the jelly drawer", "jelly"), ("press the lily button", "lily")):
        assert [w for w, _, _ in check.judge(text, "warn", 0.45, count=False).unknown] == [word]
    for text in ("open the drawer slowly", "open the drawer easily", "slide the window open gently"):
        assert check.judge(text, "warn", 0.45, count=False).unknown == (), text
    matcher = check.matcher
    assert matcher is not None and matcher._word_rows.shape[0] == len(matcher._vocabulary) > 0
    words = TrainedWords(["open", "the", "drawer"])
    assert words.untrained("open the drawer") == [] and words._english_words is None


def test_trained_words_in_another_form_name_a_task(default_runner):
    """"faucets", "closing windows", "opening drawers" ran their task before texts naming nothing were refused,
    then were refused as naming nothing (only the exact trained words counted): a word as near a trained one as
    UNKNOWN_WORD_SIMILARITY names it. The nearest trained word is one that names something, never "the" or
    "ahead" (the nearest to "fridge" was "ahead")."""
    from deer_vla.core.instruction_text import ADDRESS_WORDS, FUNCTION_WORDS

    check = InstructionCheck.for_runner(default_runner)
    for text, task in (("faucets", "faucet-open"), ("closing windows", "window-close"),
                       ("opening drawers", "drawer-open")):
        verdict = check.judge(text, "warn", 0.45, count=False)
        assert not verdict.names_nothing and verdict.match is not None and verdict.match.task == task, text
    # the rows share spelling more than meaning: a look-alike ("joke"/"poke" 0.41, French "le"/"lever" 0.49) is
    # no form of a trained word, and such texts still name nothing (a review: they ran a task under 'warn')
    for text in ("tell me a joke", "ouvre le tiroir", "halt! nicht bewegen"):
        assert check.judge(text, "warn", 0.45, count=False).names_nothing, text
    matcher = check.matcher
    assert matcher is not None and not set(matcher._vocabulary) & (FUNCTION_WORDS | ADDRESS_WORDS)
    assert matcher.nearest_trained_word("fridge")[0] not in FUNCTION_WORDS


def test_a_text_far_under_every_trained_wording_names_no_task(default_runner):
    """"hold on a second" (before it was a stop) ran handle-press at 0.15 under 'warn': it names a trained word
    ("on") but is far under every trained wording. Under FAR_UNDER_SIMILARITY (or a lower floor) a text names no
    task, in either mode; no wording of the default suite is."""
    from deer_vla.ros.instruction_check import FAR_UNDER_SIMILARITY
    from deer_vla.sim.tasks import TASK_SUITE

    check = InstructionCheck.for_runner(default_runner)
    verdict = check.judge("hold on a second", "warn", 0.45, count=False)
    assert not verdict.names_nothing and verdict.far_off and verdict.no_task and verdict.refused("warn")
    assert verdict.match is not None and verdict.match.similarity < FAR_UNDER_SIMILARITY == 0.2
    assert verdict.heard(0.45).startswith("names no task, so unlike every instruction this checkpoint was trained on")
    assert not check.judge("hold on a second", "warn", 0.1, count=False).far_off  # a floor under it lowers it
    wordings = [t for task in TASK_SUITE.values() for t in (*task.train_instructions, *task.heldout_instructions)]
    assert [t for t in wordings if check.judge(t, "warn", 0.45, count=False).far_off] == []


def test_a_look_alike_of_a_trained_word_is_still_a_word_never_learned():
    """On mt50 "turn off the stove" was heard as faucet-close at INFO: "stove" is 0.69 from the trained "shove"
    in mean token rows (spelling), so it passed as known. Only another form of a trained word (the same first 4
    letters too) is known, as for texts naming no task."""
    mt50 = REPO / "deer_vla" / "assets" / "mt50_checkpoint"
    if not (mt50 / "config.json").is_file():
        pytest.skip("needs the shipped mt50 checkpoint")
    from deer_vla.model.runner import PolicyRunner

    torch.set_num_threads(1)
    check = InstructionCheck.for_runner(PolicyRunner.from_checkpoint(mt50))
    assert check.matcher is not None and check.matcher.nearest_trained_word("stove")[1] > 0.4
    verdict = check.judge("turn off the stove", "warn", 0.45, count=False)
    assert [w for w, _, _ in verdict.unknown] == ["stove"] and verdict.doubtful
    assert check.judge("turn off the faucets", "warn", 0.45, count=False).unknown == ()


@pytest.fixture(scope="module")
def mt50_check():
    mt50 = REPO / "deer_vla" / "assets" / "mt50_checkpoint"
    if not (mt50 / "config.json").is_file():
        pytest.skip("needs the shipped mt50 checkpoint")
    from deer_vla.model.runner import PolicyRunner

    torch.set_num_threads(1)
    return InstructionCheck.for_runner(PolicyRunner.from_checkpoint(mt50))


def test_a_task_written_as_its_name_is_read_apart_and_refused_when_heard_as_another(mt50_check, default_runner):
    """An audit's operator software sent task names: the tokenizer cut "door-lock" into the "lock" of "un"+"lock"
    and the mt50 checkpoint heard door-unlock (0.95) at INFO; "push-wall" was heard as button-press-wall, and the
    default heard the mt50 task "lever-pull" as handle-press, both at INFO. Joined words are read apart now, and a
    task's name heard as another task, or naming a task the checkpoint never learned, is refused."""
    lock = mt50_check.judge("door-lock", "warn", 0.45)
    assert lock.match is not None and lock.match.task == "door-lock" and not lock.refused("warn")
    for text in ("push-wall", "PUSH_WALL", '"push-wall"', "push wall"):
        verdict = mt50_check.judge(text, "warn", 0.45)
        assert verdict.misnamed and verdict.refused("warn") and verdict.doubtful, text
        heard = verdict.heard(0.45)
        assert "names the task push-wall by its name" in heard and "say it in words, as trained (" in heard
    default = InstructionCheck.for_runner(default_runner)
    lever = default.judge("lever-pull", "warn", 0.45)
    assert lever.refused("warn") and "a task this checkpoint was not trained on" in lever.heard(0.45)
    # its own task names, heard as themselves, run; so do trained wordings that only look like names
    for text in ("drawer-open", "drawer_open", "window-close-v3"):
        verdict = default.judge(text, "warn", 0.45)
        assert verdict.match is not None and not verdict.refused("warn") and not verdict.misnamed, text
    assert default_runner.read_instruction("Door-Lock the drawer_open")[0] == "Door Lock the drawer open"
    # a dotted name or one after a label (set m's "Command: door.lock" was heard as door-unlock at a WARN)
    for text in ("Command: door.lock", "door.lock", "task: door/lock"):
        verdict = mt50_check.judge(text, "warn", 0.45)
        assert verdict.named_task is not None and verdict.named_task[0] == "door-lock", text
        assert verdict.match is not None and (verdict.match.task == "door-lock" or verdict.refused("warn")), text
    assert default.judge("Note: drawer.open", "warn", 0.45).named_task[0] == "drawer-open"


def test_joined_words_a_wording_was_trained_on_stay_joined():
    from deer_vla.model.instruction_words import TrainedWords

    words = TrainedWords.from_wordings({"button-press-topdown": ["top-down button press"]})
    assert words.apart("a top-down x-ray of the e_stop") == "a top-down x ray of the e stop"
    assert words.read("TOP-DOWN press-it")[0] == "TOP-DOWN press it"


def test_a_task_heard_for_the_thing_set_aside_is_refused(default_runner):
    """"forget the drawer, open the window" was heard as drawer-open (0.75) at INFO, "ignore the faucet, close the
    window" as faucet-close: the task after a dismissal is what is asked, and the policy, reading every word,
    hears the one set aside. Where the whole is heard as the task asked, it runs."""
    check = InstructionCheck.for_runner(default_runner)
    for text in ("forget the drawer, open the window", "ignore the faucet, close the window",
                 "open the window instead of the drawer", "open the window rather than the drawer",
                 # a correction takes back what comes before it ("open the faucet, I mean the window" opened the
                 # faucet at INFO; an audit's)
                 "close the drawer sorry the window", "open the faucet, I mean the window",
                 "open the drawer, no wait, the window", "open the door, actually close it"):
        verdict = check.judge(text, "warn", 0.45)
        assert verdict.heard_set_aside is not None and verdict.refused("warn"), text
        assert " aside and asks " in verdict.heard(0.45) and ", but is heard as " in verdict.heard(0.45)
    # "rather than" and "instead of" set the thing after them aside: heard as the task asked, the text runs
    for text in ("forget about the window, open the drawer", "cancel that, close the window instead",
                 "open the drawer rather than the window", "rather than the window, open the drawer",
                 # heard as what the correction asks, or as near it as to one of its tasks: they run
                 "turn off the faucet, sorry, I said turn off the faucet", "open the window, I mean the drawer",
                 "close the drawer instead of leaving it open",
                 # half a request after the correction: the other half is the one said before (a held-out audit's
                 # "close the drawer, no wait, open it" was refused as asking faucet-open)
                 "close the drawer, no wait, open it",
                 # a correction word is no word the policy never learned (a review's: 'oops' was said so)
                 "close the window, oops, the drawer"):
        verdict = check.judge(text, "warn", 0.45)
        assert verdict.heard_set_aside is None and not verdict.refused("warn"), text
    assert not check.judge("close the window, oops, the drawer", "warn", 0.45).unknown


def test_a_speech_recognisers_fillers_name_nothing(default_runner):
    """"um, open the drawer" WARNed that the policy never learned "um" (12 of an audit's 22 WARNs on speech)."""
    check = InstructionCheck.for_runner(default_runner)
    for text in ("um open the drawer", "uh, close the window, erm, please", "yeah hmm open the drawer"):
        verdict = check.judge(text, "warn", 0.45)
        assert verdict.match is not None and not verdict.unknown and not verdict.doubtful, (text, verdict.unknown)


def test_one_word_that_several_tasks_wordings_share_is_refused(default_runner, mt50_check):
    """A fresh audit's: "open" ran faucet-open (0.74) on the default and window-open (0.68) on mt50, "handle"
    handle-press (0.71), each at INFO: one word of several tasks' wordings names none of them."""
    check = InstructionCheck.for_runner(default_runner)
    for text, tasks in (("open", 3), ("OPEN!", 3), ("drawer", 2), ("handle", 3)):
        verdict = check.judge(text, "warn", 0.45)
        assert verdict.one_shared_word is not None and len(verdict.one_shared_word[1]) == tasks, text
        assert verdict.refused("warn") and verdict.heard(0.45).startswith(f"names only {text.lower().strip('!')!r}")
    for text in ("coffee", "open the drawer", "drawer open"):  # one task's word; or more than one word
        assert not check.judge(text, "warn", 0.45).refused("warn"), text
    go = mt50_check.judge("go to the goal", "warn", 0.45)  # mt50's held-out wording: reach stands out (0.83, 0.61)
    assert go.match is not None and go.match.task == "reach" and not go.refused("warn")
    assert mt50_check.judge("coffee", "warn", 0.45).one_shared_word == ("coffee", ("coffee-button", "coffee-pull",
                                                                                    "coffee-push"))
    reach = mt50_check.judge("reach", "warn", 0.45)  # a task's own name, heard as it: it names that task
    assert reach.match is not None and reach.match.task == "reach" and not reach.refused("warn")


def test_one_verb_for_two_things_or_a_sequence_is_heard_as_two_tasks(default_runner, mt50_check):
    """A held-out audit's: "close the window and the drawer" ran drawer-close, "open the door and the drawer"
    drawer-open, at INFO: a clause naming a thing alone takes the verb of the one before. Set f's: "first the
    drawer, then the window" ran drawer-open, "do the drawer first and the faucet second" faucet-open, and on
    mt50 "open the door and then lock it" door-lock, at INFO."""
    check = InstructionCheck.for_runner(default_runner)
    for judge, text in ((check.judge, "close the window and the drawer"),
                        (check.judge, "open the window and the drawer"),
                        (mt50_check.judge, "open the door and the drawer"),
                        (check.judge, "first the drawer, then the window"),
                        (check.judge, "do the drawer first and the faucet second"),
                        (mt50_check.judge, "open the door and then lock it"),
                        # set j's: "also" before the second thing (drawer-open at INFO)
                        (check.judge, "Please open the window and also the drawer."),
                        # set n's: at the same time (drawer-open silently)
                        (check.judge, "open the drawer and the window at the same time"),
                        (check.judge, "open the drawer and the window together")):
        verdict = judge(text, "warn", 0.45)
        assert verdict.two_tasks is not None and verdict.doubtful, text
    for judge, text in ((check.judge, "open the drawer and pull it"), (check.judge, "close the drawer, then stop"),
                        (check.judge, "the drawer, open it"), (check.judge, "open the drawer first"),
                        (check.judge, "first open the window"), (mt50_check.judge, "open the door, then push it"),
                        # a state is no task asked, nor the thing of "it" (a review's)
                        (mt50_check.judge, "the door is locked, unlock it"),
                        (check.judge, "open the drawer all at once"), (check.judge, "press the button once")):
        assert judge(text, "warn", 0.45).two_tasks is None, text


def test_two_requests_of_two_things_are_two_tasks_below_the_two_task_bar(default_runner, mt50_check):
    """On mt50 "shut the faucet and close the window" ran faucet-close silently: "shut the faucet" is 0.86, under
    TWO_TASKS_SIMILARITY. Two clauses with their own verbs, each heard at TWO_THINGS_SIMILARITY or more as a task
    of a thing the other task's wordings do not name, are two tasks; MT50's multi-step wordings name one task's
    things, and a thing set aside is no second task."""
    for text in ("shut the faucet and close the window", "OPEN THE DRAWER AND SHUT THE WINDOW!",
                 "Open the drawer & shut the window.", "Open the drawer an' shut the window.",  # set t's
                 "Open the window and kick the ball, two things at once!"):
        verdict = mt50_check.judge(text, "warn", 0.45)
        assert verdict.two_tasks is not None and verdict.doubtful, text
    check = InstructionCheck.for_runner(default_runner)
    for judge, text in ((mt50_check.judge, "reach past the wall and push the button"),
                        (mt50_check.judge, "pick up the puck and place it at the goal"),
                        (mt50_check.judge, "grab the stick and pull the box"),
                        (mt50_check.judge, "leave the window alone and open the drawer"),
                        (check.judge, "open the window, I mean the drawer"),
                        (check.judge, "Shut the drawer, over and out.")):
        assert judge(text, "warn", 0.45).two_tasks is None, text


def test_a_thing_said_absent_that_pulls_the_text_to_its_task_is_refused(default_runner, mt50_check):
    """Set h's: "press the button from above, there is no wall" ran button-press-wall on mt50 at INFO: the model
    reads "wall". Refused (the instruction in force dropped) where the text without that clause is heard as
    another task; "there's no water, turn on the faucet" is faucet-open either way and runs."""
    pulled = mt50_check.judge("Press the button from above, there is no wall.", "warn", 0.45)
    assert pulled.absent_heard == ("no wall", "button-press-topdown") and pulled.drops
    assert "says 'no wall' but is heard as button-press-wall" in pulled.heard(0.45)
    isnt = mt50_check.judge("there isn't a wall, press the button from above", "warn", 0.45)  # a review's
    assert isnt.absent_heard is not None and isnt.absent_heard[0] == "isn't a wall" and isnt.drops
    check = InstructionCheck.for_runner(default_runner)
    water = check.judge("there's no water, turn on the faucet", "warn", 0.45)
    assert water.absent_heard is None and not water.refused("warn")


def test_a_reason_beside_a_request_that_pulls_it_to_another_task_is_refused(default_runner, mt50_check):
    """Set s's (held out): "open the door, I'm locked out" ran door-lock silently on mt50, "locked" outweighing
    "open the door". Refused (dropped) where the request alone is clearly its own task and the text is heard as
    another; a reason that tells a shared request apart ("i would like a coffee, press the button", an MT50
    wording: which button), one heard as the request's task, and a correction run."""
    for text in ("open the door, I'm locked out", "I'm locked out, open the door"):
        verdict = mt50_check.judge(text, "warn", 0.45)
        assert verdict.reason_heard == ("open the door", "door-open") and verdict.drops, text
        assert "asks 'open the door' (door-open), but with the words beside it is heard as door-lock" in \
            verdict.heard(0.45)
    check = InstructionCheck.for_runner(default_runner)
    # a review's: a shared request pulled to a task whose wordings name none of its things, clear or not
    for judge, text in ((check.judge, "press the button, the drawer is open"),
                        (mt50_check.judge, "push the button, the door is locked")):
        assert judge(text, "warn", 0.45).drops, text
    for judge, text in ((mt50_check.judge, "i would like a coffee, press the button"),
                        (check.judge, "i would like a coffee, press the button"),
                        (mt50_check.judge, "open the door, it's stuck"),
                        (check.judge, "open the window, I mean the drawer"),
                        (check.judge, "close the drawer, it's in the way")):
        verdict = judge(text, "warn", 0.45)
        assert verdict.reason_heard is None and not verdict.drops, text


def test_off_said_against_onto_is_a_warning(mt50_check):
    """Set j's: "take the ring off the peg" was heard as assembly's "slide the ring onto the peg" (0.76) at INFO."""
    verdict = mt50_check.judge("Take the ring off the peg.", "warn", 0.45)
    assert verdict.contradicts == ("off", "onto") and verdict.doubtful
    assert not mt50_check.judge("slide the ring onto the peg", "warn", 0.45).doubtful


def test_what_follows_a_no_is_judged_as_if_alone(default_runner):
    """A leading "no" takes back what was going on ("no, open the drawer" runs); after it a thing alone or a
    verb alone names one word several tasks share, refused as such (the "no" names nothing)."""
    check = InstructionCheck.for_runner(default_runner)
    for text in ("no, the window", "no, close it"):
        verdict = check.judge(text, "warn", 0.45)
        assert verdict.one_shared_word is not None and verdict.refused("warn"), text
    assert not check.judge("no, open the drawer", "warn", 0.45).refused("warn")


def test_a_refusal_of_a_long_text_says_the_model_reads_only_its_start(default_runner):
    """Set i's: a request after a long preamble was refused as naming "nothing this checkpoint was trained on",
    though it said "pull the drawer open": the model reads 24 tokens, so the refusal says so."""
    check = InstructionCheck.for_runner(default_runner)
    text = ("So um, yeah, I was thinking about what we need to do today and honestly it has been a long day, "
            "could you maybe, like, pull the drawer open")
    verdict = check.judge(text, "warn", 0.45)
    assert verdict.refused("warn") and verdict.unread[0] > 0
    assert f"longer than the {verdict.unread[1]} the model reads" in verdict.heard(0.45)
    assert check.judge("pull the drawer open", "warn", 0.45).unread == (0, verdict.unread[1])
    # a log line's time stamp took the tokens the model reads: the words of the request are in the text, so the
    # refusal says none of the words the model reads is trained (it said none of the text's was)
    stamped = check.judge("2026-12-07T19:40:01Z INFO cmd: close the drawer", "warn", 0.45)
    assert stamped.names_nothing and stamped.unread[0] > 0
    assert "(none of the words the model reads is in a trained wording)" in stamped.heard(0.45)
    assert "(none of its words is in a trained wording)" in check.judge("hello", "warn", 0.45).heard(0.45)


def test_an_apology_after_a_request_corrects_nothing(default_runner):
    """Set m's "Please open the drawer, sorry for the trouble" was refused as a correction, "asks faucet-open":
    "sorry" before "for", "to", "about" apologises; "open the faucet, sorry, the window" still corrects."""
    check = InstructionCheck.for_runner(default_runner)
    for text in ("Please open the drawer, sorry for the trouble", "Close the drawer, sorry to bother you"):
        verdict = check.judge(text, "warn", 0.45, count=False)
        assert verdict.heard_set_aside is None and not verdict.refused("warn"), text
    corrected = check.judge("open the faucet, sorry, the window", "warn", 0.45, count=False)
    assert corrected.heard_set_aside is not None and corrected.refused("warn")
