"""The one form of an instruction's text that the tokenizer reads, in training and at run time alike."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Collection, Iterable
from itertools import dropwhile

# The longest instruction anything reads, in characters: the model reads only its first lm.max_text_len tokens,
# but the tokenizer reads the whole text (cutting it first could change the tokens at the cut), about 200 ms
# at this length on a CPU and seconds for megabytes. The policy node's max_instruction_chars is at most this.
MAX_INSTRUCTION_CHARS = 1 << 16
# marks people type for an apostrophe: right and left single quotes, acute and grave accents, modifier letters,
# the prime (fullwidth ones are NFKC's to fold, as the tokenizer does)
APOSTROPHES = "\u2019\u2018\u00b4`\u02bc\u02b9\u2032"
_PLAIN_APOSTROPHES = str.maketrans(APOSTROPHES, "'" * len(APOSTROPHES))
# letters (the modifier-letter apostrophes aside), with apostrophes inside ("don't", "maker's"); digits and
# underscores are not word letters here
_LETTER = r"[^\W\d_\u02bc\u02b9]"
WORD = re.compile(rf"{_LETTER}+(?:['{re.escape(APOSTROPHES)}]{_LETTER}+)*")
# words that make a request one not to do something: the policy can only do tasks, and it did the task named
# ("don't open the drawer" opened it in 10 of 10 episodes on the shipped default), so such a request is refused.
# Contractions are also matched by their ending (n't, 'nt), with or without the apostrophe for the common ones
NEGATIONS = frozenset({
    "not", "never", "no", "nor", "neither", "cannot", "donot", "avoid", "dont", "doesnt", "didnt", "cant", "wont",
    "shouldnt", "mustnt", "couldnt", "wouldnt",
    # Scots ("Dinnae open that drawer" ran drawer-open at INFO)
    "dinnae", "dinna", "didnae", "cannae", "canna", "wouldnae", "shouldnae", "winnae", "wullnae",
})
# words that ask to stop (or prevent) doing something, as the first word of their clause that names anything
# (not "please", "robot", "can you": FUNCTION_WORDS): before a verb's -ing form, or "from" and one ("stop closing
# the window" closed it in 3 of 3 episodes, "stop the drawer from closing" was heard as drawer-close at 0.82), or in
# a text that names no task ("stop!", "stop the robot", which the shipped default heard as faucet-close and moved the
# arm for). Not with a subject of their own ("until the water stops running"), nor after a task ("close the drawer
# without slamming it"). A request to stop is no task (~/halt stops the arm; a refused instruction does too)
CESSATIONS = frozenset({
    "stop", "stops", "stopping", "quit", "quitting", "cease", "ceasing", "refrain", "refraining", "halt", "halting",
    "abort", "freeze", "without", "prevent", "prevents", "preventing", "pause", "pausing", "wait",
})
# their base forms ask it wherever they stand in a clause before an -ing form ("you should stop opening the drawer",
# "stop the window opening", "prevent the drawer being opened"); "stops" has a subject of its own ("until it stops
# moving")
BASE_CESSATIONS = frozenset({"stop", "quit", "cease", "refrain", "halt", "prevent", "pause"})
# these ask to stop a thing itself when they start a clause, before "the" or another determiner ("stop the drawer",
# "halt the window", "pause the drawer": the default heard them as drawer-close 0.78, window-close, drawer-close);
# not a flow, which stopping turns off ("stop the water", the suites' own faucet-close wording), nor a clause a
# checkpoint was trained on (``stop_phrase``)
STOP_THE = frozenset({"stop", "halt", "freeze", "pause", "cease", "quit", "abort"})
STOPPED_THING_AFTER = frozenset({"the", "a", "an", "that", "this", "your", "my", "its", "those", "these"})
# a stop word right before these ends its clause, its comma left out ("STOP it's my turn" ran faucet-close at INFO;
# "stop it's wrong, open the drawer" asks the task, as with the comma)
STOP_THEN_CLAUSE = re.compile(r"\b(stop|halt|freeze|wait|abort)\s+(?=(?:it's|i'm|that's|you're|we're)\b)",
                              re.IGNORECASE)
FLOWS = frozenset({"water", "faucet", "tap", "flow", "stream", "leak"})
# "hold off opening the drawer", "put off opening the window": heard as the task they put off
PHRASAL_CESSATIONS = frozenset({("hold", "off"), ("put", "off")})
# words that name no task beside a stop ("stop right there", "halt the arm", "freeze in place", "stop what you're
# doing", "emergency stop", "no more, stop": the default heard most as faucet-close, 0.51-0.62, at OK)
# said beside a stop, naming nothing ("stop lol", "stop stop stop omg": set n's ran faucet-close on the default)
INTERJECTIONS = frozenset({"lol", "omg", "bruh", "ugh", "lmao", "haha", "jeez", "geez", "gosh", "argh", "yikes",
                           "whoa", "woah", "wtf", "ffs", "dude", "oh", "ow", "ouch", "oi", "man", "mate", "sho", "eish",
                           "ja", "hey", "leh", "lah", "och", "aye", "wow", "bro", "bruv", "fam", "yo"})
STOP_FILLERS = frozenset({
    "arm", "motion", "movement", "moving", "everything", "all", "right", "there", "here", "immediately", "once",
    "emergency", "place", "still", "enough", "that's", "what", "you're", "doing", "in", "at", "on", "hold",
    "stand", "no", "more", "completely", "asap", "put",
    # "hold on a second", "hang on a moment", "stay where you are": an audit's ran a task (0.15) or kept the last
    "second", "seconds", "sec", "moment", "minute", "bit", "where", "are",
    # set j's: "Stop yourself, please!" ran faucet-close at INFO
    "yourself", "yourselves", "itself",
    "everywhere", "anywhere",  # "stop right there, water everywhere" (set o's ran faucet-close at a WARN)
    # who a stop is said to (set p's "Stop. Everybody hands off. Stop." ran faucet-close silently)
    "everybody", "everyone", "guys", "folks", "team", "people",
}) | INTERJECTIONS
# "hold on", "stand still", "that's enough", "stay put", "leave it", "do nothing", "cancel that", "forget it": a
# stop in a text that names nothing else (an audit's: each heard as a task, at an unfamiliar WARN that still runs)
STOP_VERBS = frozenset({"hold", "hang", "stand", "enough", "stay", "leave", "nothing", "cancel", "forget",
                        "nevermind"})
# what a text that is only these (and FUNCTION_WORDS) asks is to stop ("shut down", heard as faucet-close 0.70 at
# INFO; "stand down", "call it off", "knock it off", "scratch that", "take a break": a review's, at a WARN that runs)
BARE_STOP_PHRASES = frozenset({
    ("shut", "down"), ("power", "off"), ("power", "down"), ("stand", "down"), ("call", "off"), ("knock", "off"),
    ("cut", "out"), ("take", "break"), ("scratch",), ("scrap",), ("abort", "mission"), ("relax",), ("undo",),
    # a set's: "hands off" ran button-press-topdown (0.47) at INFO; "back off", "hold position" ran faucet-close,
    # reach at a WARN; "noop" is SAID_STOPS'
    ("hands", "off"), ("back", "off"), ("hold", "position"), ("stand", "back"),
    ("hold", "up"),  # set r's "Stop stop stop, hold up bro!" ran faucet-close silently on the default
})
# a home position, which no task of the suites goes to ("go to home position" ran reach at INFO on mt50, 0.46):
# "home" with nothing else named but these is refused as the stops are, but they are no stop words (they still
# name something the policy never learned in "open the drawer, then return home")
HOME = "home"
HOMING_WORDS = frozenset({HOME, "position", "pose", "return", "back", "move", "reset", "your", "arm", "gripper",
                          "hand", "please", "now", "go", "head", "retract"})
# words beside such a phrase that name nothing ("time to shut down", "shut down for the day", "go ahead and ...")
STOP_PHRASE_FILLERS = frozenset({"time", "day", "and", "then", "now", "today", "please"})
# these dismiss what follows them as the first word of a clause that names anything ("forget the drawer", heard as
# drawer-close 0.73 at INFO; "skip the drawer", drawer-open 0.71; "open the drawer, cancel that"), unless a clause
# after it names a task: that task is what is asked ("cancel that, close the window instead")
DISMISSALS = frozenset({"forget", "cancel", "nevermind", "ignore", "skip", "disregard", "scratch", "scrap"})
# these ask the robot to stop as a clause of their own wherever it stands ("The robot is done. Stop.", "Great. Now
# stop.": an audit's ran faucet-close at INFO), or as the last word of a text after a word that is no flow
# ("E-STOP", "cmd=stop"; not "make the water stop"), where no clause asks a task: beside one it ends the task ("open
# the drawer, then stop", a review's)
SAID_STOPS = frozenset({"stop", "halt", "freeze", "abort", "pause", "wait", "quit", "cease", "estop",
                        # a planner's "do nothing": "noop" was read as "hoop" and ran basketball on mt50 at INFO
                        "noop", "nop"})
# words that take back what was said before them ("close the drawer, I mean the window" closed the drawer, "open the
# faucet, sorry, the window" opened the faucet, at INFO): what follows is what is asked (``set_aside``)
# "sorry" before these apologises ("sorry for the trouble", "sorry to bother you"), it corrects nothing
APOLOGY_AFTER = frozenset({"for", "to", "about", "if", "again", "mate", "love", "dear"})
CORRECTIONS = (("i", "mean"), ("i", "meant"), ("sorry",), ("oops",), ("whoops",), ("correction",), ("i", "said"),
               ("no", "wait"), ("actually",), ("wait",), ("rather",))
# these set aside the thing after them, to their clause's end: the rest of the text is what is asked ("open the
# window instead of the drawer", "rather than the window, open the drawer"; ``set_aside``)
SET_ASIDE_BEFORE = (("instead", "of"), ("rather", "than"))
# "stay away from the faucet" (heard as faucet-close 0.86), "keep away from the window", "get away from the window"
# (window-close 0.68 at INFO), "move away from the drawer": a thing to leave be
KEEP_AWAY = ("away", "from")
KEEP_AWAY_VERBS = frozenset({"stay", "keep", "get", "move", "step", "back", "pull"})
# after a negation these make it ask for nothing at all ("don't do anything", "never mind": heard as tasks at an
# unfamiliar WARN): a negation with no other word refuses, as "don't!" does
NOTHING_AT_ALL = frozenset({"anything", "mind"})
# "keep the drawer from opening" (heard as drawer-open, 0.90) asks to prevent; "keep pushing" asks to go on
KEEP_FROM = ("keep", "from")
# "leave the drawer alone" (or "be"): a request to leave it as it is, which the default heard as drawer-open (3 of 3
# opened; "leave the window be" as window-open 0.72)
LEAVE_ALONE = ("leave", "alone")
LEFT_AS_IT_IS = frozenset({"alone", "be"})
# a thing left, held or kept "where it is" or "as it is" is one not to move
AS_IT_IS_VERBS = frozenset({"leave", "hold", "keep"})
# every word the rules below return for a request to stop, prevent, put off or leave a thing be
STOP_REQUESTS = (CESSATIONS | SAID_STOPS | STOP_VERBS | DISMISSALS | LEFT_AS_IT_IS | {KEEP_FROM[0], KEEP_AWAY[0]}
                 | {first for first, _ in PHRASAL_CESSATIONS} | {phrase[0] for phrase in BARE_STOP_PHRASES})
# words that address the robot or ask politely and name no task. The instruction matcher leaves them out of the
# texts it compares, the trained wordings and the text heard alike: pooled, "robot" pulled "hey robot, close the
# drawer" to the one wording that names the robot ("pull the drawer out toward the robot", drawer-open, 0.77), and
# "please" pulled "open the tap please" to mt50's "please open the door"
# A speech recogniser's fillers are such words too ("um, open the drawer" WARNed that the policy never learned "um")
SPEECH_FILLERS = frozenset({"um", "umm", "uh", "uhh", "uhm", "er", "erm", "hmm", "hm", "mm", "ah", "eh", "yeah"})
# texting's "pls" ("stop pls" ran faucet-close at INFO: a stop beside a word that named something)
ADDRESS_WORDS = frozenset({"please", "pls", "plz", "robot", "hey", "ok", "okay", "kindly"}) | SPEECH_FILLERS
# where a clause ends: "push the puck, not too fast" asks for the task, "the drawer, don't open it" forbids it (a
# dash too, not a hyphen: "hang on, phone's ringing—open the window" was one clause with a stop in it)
# ("&", "an'", "n'" are "and": set t's "Open the drawer an' shut the windae at the same time" ran one task silently)
CLAUSE_BREAK = re.compile(r"[,;:.!?&\u2013\u2014]|\b(?:so|but|if|unless|because|while|and|then)\b"
                          r"|(?<!\w)a?n['\u2019](?=\s)", re.IGNORECASE)
# words that name no task: a clause of only these and a negation ("don't!", "robot, never") forbids what follows
FUNCTION_WORDS = frozenset({
    "the", "a", "an", "to", "it", "its", "it's", "you", "i", "me", "my", "please", "pls", "plz", "robot", "hey", "ok",
    "okay",
    "could", "would", "can", "will", "some", "like", "need", "of", "that", "this", "for", "with", "is", "be", "now",
    "just", "do", "ever", "again", "there", "we", "us", "let's", "go", "ahead", "actually", "instead",
    # courtesy ("forget the drawer, thanks" counted "thanks" as a task after the dismissal, and ran)
    "thanks", "thank", "sorry", "cheers", "thx",
}) | SPEECH_FILLERS
# a negation after these says what something is, not what not to do ("the button that is not red", "so it's
# not left open")
COPULAS = frozenset({"is", "are", "was", "were", "it's", "that's", "there's", "which", "that", "who"})
# after the verb these make a clause a goal, not a state: "the door is to be locked", "is supposed to be open",
# "it's time to open the window", "the drawer is in need of closing", "the window is what needs opening"
GOAL_WORDS = frozenset({"to", "supposed", "meant", "going", "gonna", "expected", "required", "need", "needs",
                        "needed", "due", "should", "must"})
STATE_VERBS = frozenset({"is", "are", "was", "were"})
# the subject of a goal said with a copula ("the goal is the drawer open", "the next step is closing the drawer")
GOAL_SUBJECTS = frozenset({"goal", "aim", "plan", "task", "idea", "job", "point", "next", "step", "target",
                           "priority", "mission", "objective", "order", "instruction"})
# the words of CORRECTIONS and SET_ASIDE_BEFORE: they name nothing the policy could do
CORRECTION_WORDS = frozenset({"sorry", "oops", "whoops", "correction", "actually", "wait", "mean", "meant", "rather",
                              "than"})
RELATIVES = frozenset({"that", "which", "who", "whose"})
CONTRACTED_COPULAS = frozenset({"it's", "that's", "they're"})
CONTRACTED_BE = frozenset({"you're", "we're", "they're", "it's", "he's", "she's", "i'm", "robot's"})
# words that start a question that asks nothing to be done
QUESTION_STARTS = frozenset({"what", "what's", "why", "how", "which", "where", "where's", "when", "who"})
# verbs that start a question when a subject follows them ("is the window open", "did you press the button")
QUESTION_VERBS = frozenset({"is", "are", "was", "were", "isn't", "aren't", "did", "does", "do", "didn't", "doesn't",
                            "has", "have"})
ASKING_ANY_SUBJECT = frozenset({"did", "didn't", "does", "doesn't"})
AUXILIARIES = frozenset({"can", "could", "should", "would", "will", "shall", "may", "might", "must"})
# a negation last in its clause after these negates the verb after an aside ("the robot shall not, ever, close
# the window"; set o's "You ought not, in any possible world, turn the faucet on" ran faucet-open at a WARN)
CARRYING_NEGATION = AUXILIARIES | {"ought"}
QUESTION_SUBJECTS = frozenset({"the", "a", "an", "you", "i", "it", "this", "that", "these", "those", "we", "they",
                               "he", "she", "my", "your", "our", "their", "its", "there"})
# "do" and "have" before a subject that is no person are verbs that ask ("do it: open the window", "have the drawer
# open"); a question asks a person ("do you see the drawer?")
DOING_VERBS = frozenset({"do", "have"})
# a modal before these asks about someone else, not the robot ("would he open the window if he had the chance?":
# set m's ran window-open at INFO; "can they press the button?"), or what the speaker should do ("should I
# open the drawer?"; not "can I get you to open it", "could I have the drawer open", requests)
OTHERS_ASKED = frozenset({"he", "she", "they"})  # (not "could someone close the drawer?": asks whoever hears it)
SPEAKER_ASKED = (("should", "i"), ("shall", "i"), ("must", "i"), ("might", "i"))  # (not "should we ...": a
# suggestion)
PERSONS = frozenset({"you", "i", "we", "they", "he", "she"})
# address words before a name called ("hey Priya, did you ...?")
ADDRESSED = re.compile(r"\s*(?:(?:hey|hi|hello|ok|okay|oi|yo)\b[\s,!]*)+", re.IGNORECASE)
# one word and a comma first: a name called ("Priya, did you leave the drawer open?"), the question after it
VOCATIVE = re.compile(r"\s*([^\W\d_][\w'\u2019-]*)\s*,")
# where a question ends and a request may follow ("are you ready? open the drawer")
QUESTION_BREAK = re.compile(r"[?.!;:]")
# requests put as questions ("why not ...", "why don't you ..." are negations': refused on the safe side)
REQUESTS_AS_QUESTIONS = (("do", "you", "mind"), ("would", "you"), ("how", "about"), ("what", "about"),
                         ("is", "it", "possible"), ("is", "there", "any", "way"), ("are", "you", "able"),
                         ("is", "it", "ok"), ("is", "it", "okay"), ("isn't", "it", "time"), ("what's", "needed"),
                         ("what", "is", "needed"))
# the subjects of a clause that says how something is ("the window is open", "it's closed", "my drawer was left open")
STATE_SUBJECTS = frozenset({"the", "this", "that", "these", "those", "it", "it's", "its", "my", "your", "our",
                            "that's", "they", "they're"})
# who did a thing, in a report of it ("I opened the window", "you closed the drawer", "the robot pressed the button":
# a set's ran their task at INFO); with the words that may come between them and the deed ("I already closed", "I've
# just pressed", "you have opened")
DOERS = frozenset({"i", "you", "we", "they", "he", "she", "it", "someone", "somebody", "i've", "you've", "we've",
                   "they've", "i'd", "you'd"})
DOER_NOUNS = frozenset({"robot", "arm", "gripper"})
SEEMING = frozenset({"seems", "seem", "seemed", "appears", "appear", "appeared", "looks", "looked"})
# a clause these start says what will happen or is happening: beside a stop, its reason, not a request
WARNING_SUBJECTS = frozenset({"you'll", "you're", "it'll", "it's", "that's", "there's", "they're", "they'll", "he's",
                              "she's", "he'll", "she'll", "that'll", "this'll", "we're"})
WARNING_VERBS = frozenset({"will", "is", "are", "was", "were", "gonna", "going", "might", "may", "can't", "won't",
                           "could", "would"})
MISHAPS = frozenset({"break", "burst", "fall", "crash", "spill", "tip", "drop", "overflow", "flood", "explode",
                     "snap", "collapse", "hurt", "cut", "trap", "catch"})
YOU_WARNING_VERBS = frozenset({"will", "are", "were", "gonna", "going", "won't", "might"})  # ("you could ...": asks)
WANTING_AFTER = frozenset({"need", "want", "have", "must", "should", "wanna", "gotta", "needs", "wants"})
# "I'm after opening the drawer": done just now, in Irish English
AFTER_PERFECT = frozenset({"i'm", "we're", "you're", "he's", "she's", "it's", "they're"})
# one doer, whose deed said in the present is narration ("the robot opens the drawer", "it closes the window": set
# m's ran drawer-open and window-close at INFO); not "you", "we", "they", whose bare verb asks or suggests
ONE_DOER = frozenset({"he", "she", "it", "someone", "somebody"})
# present forms after one doer that say no deed but a wish or a saying ("it needs to", "he wants the drawer open",
# "she says open the drawer": reported requests), or a copula's ("it has been opened": a state, ``_states``)
NO_DEED_PRESENT = frozenset({"needs", "wants", "wishes", "hopes", "likes", "prefers", "asks", "says", "tells",
                             "expects", "requests", "means", "is", "was", "has", "does", "seems", "looks", "thinks",
                             "feels", "knows", "keeps", "gets", "goes", "lets", "makes"})
# between one doer and the deed ("the robot always opens the drawer", "it now closes the window")
BEFORE_PRESENT_DEED = frozenset({"always", "now", "then", "usually", "often", "sometimes", "just", "also", "first",
                                 "finally", "next", "slowly", "carefully"})
BEFORE_DEED = frozenset({"already", "just", "have", "had", "has", "finally", "also", "successfully", "then"})
# past forms without -ed (not those the same as the present, "shut", "put", "set": "you shut the window" may ask)
IRREGULAR_PAST = frozenset({"did", "slid", "got", "made", "took", "threw", "brought", "swept", "stuck", "left", "went",
                            "hung", "spun", "struck", "knocked", "saw"})
# adverbs between the doer and the deed ("I accidentally opened the drawer")
MANNER_SUFFIX = "ly"
# past forms of asking and wanting: "I needed the drawer open", "I asked you to close the window" still ask
WANTED = frozenset({"needed", "wanted", "asked", "wished", "hoped", "meant", "liked", "preferred", "requested",
                    "expected", "intended", "planned", "decided", "ordered", "instructed", "commanded", "demanded"})
# a deed's past form said done beside these ("window opened successfully", "drawer closed already")
DONE_ADVERBS = frozenset({"successfully", "already"})
# "done with the faucet", "I'm finished with the drawer"; praise of what was done ("good job closing the drawer")
DONE_WITH = frozenset({"done", "finished"})
DONE_BEFORE = frozenset({"i'm", "we're", "you're", "i", "we", "you", "am", "are", "all"})
# last in a clause after what it names, these say it was done ("ack: drawer-open done")
DONE_LAST = frozenset({"done", "finished", "complete", "completed"})
# a clause of a few words these start is a time, no statement of its own ("after the break, ...")
TIME_PHRASE_STARTS = frozenset({"after", "before", "during", "until", "till", "later", "tomorrow", "tonight"})
# these make "done" a time, not a report ("close the drawer after you are done", "open it when done")
TIME_WORDS = frozenset({"when", "after", "once", "until", "till", "before", "as", "soon"})
# a clause these start thanks, and asks nothing ("Thanks a lot.", "thank you, machine")
THANKS = frozenset({"thanks", "thank", "thx", "ty", "cheers"})
# what thanks may have beside them ("thanks a lot", "thank you so much, machine"; not "thanks open the drawer")
THANKS_AFTER = frozenset({"lot", "much", "so", "very", "again", "mate", "machine", "buddy", "all", "everyone"})
PRAISE = (("good", "job"), ("nice", "job"), ("great", "job"), ("good", "work"), ("nice", "work"), ("great", "work"),
          ("well", "done"), ("nicely", "done"))
# what starts an account of what is seen ("I see the robot closing the window", "looks like it pressed the button":
# set g's ran window-close, button-press-topdown at INFO)
NARRATION = (("i", "see"), ("i", "can", "see"), ("i", "saw"), ("looks", "like"), ("it", "looks", "like"),
             ("seems", "like"), ("it", "seems"), ("apparently",), ("as", "you", "can", "see"), ("as", "you", "see"),
             ("as", "you", "saw"), ("as", "you", "just", "saw"), ("you", "can", "see"), ("watch", "this"), ("watch",),
             ("look", "at", "this"), ("check", "this", "out"), ("look",), ("there's", "the", "robot"),
             ("there", "is", "the", "robot"))
# a speaker's hedge or reported speech before what is said: a statement stays one ("I think the drawer is already
# open", "lol it opened the drawer", "she says thank you for opening the drawer"), a request one ("I think you
# should open the drawer", "the user says open the drawer")
HEDGES = (("i", "think"), ("i", "guess"), ("i", "believe"), ("i", "suppose"), ("i", "reckon"), ("i", "bet"),
          ("i", "feel", "like"), ("she", "says"), ("he", "says"), ("they", "say"), ("she", "said"), ("he", "said"),
          ("they", "said"), ("user", "says"), ("the", "user", "says"), ("lol",), ("lmao",), ("haha",), ("honestly",),
          ("no", "cap"), ("tbh",), ("ngl",), ("fr",), ("for", "real"), ("lowkey",), ("maybe",), ("perhaps",),
          # "maybe the faucet is open" ran faucet-open at INFO; a radio's "I say again"
          ("probably",), ("possibly",), ("presumably",), ("i", "say", "again"), ("no", "idea"), ("not", "sure"),
          ("i", "don't", "know"), ("dunno",), ("i", "dunno"))
# a request said as what someone would say, after "if" ("if I told you to open the drawer, would you?"): these
# before it (within the first words) and the saying verbs; the main clause then asks whether, not to
HYPOTHETICAL_IFS = frozenset({"if", "suppose", "supposing", "imagine"})
HYPOTHETICAL_SAYING = frozenset({"say", "says", "said", "tell", "told", "ask", "asked", "send", "sent", "type",
                                 "typed", "write", "wrote", "give", "gave", "order", "ordered", "command",
                                 "commanded", "request", "requested"})
WILLING = frozenset({"would", "could", "will", "can", "wud", "wld", "cud"})
SPEAKERS = frozenset({"i", "we"})
SPEAKER_WOULD = frozenset({"i'd", "we'd", "i'll", "we'll"})
YOU = frozenset({"you", "u", "ya", "ye"})
# the words of a main clause that asks whether the robot would, not what ("would you do it?", "could you be able
# to?", "will you run it?")
WHETHER_WORDS = frozenset({"do", "did", "it", "that", "this", "so", "be", "able", "to", "run", "really", "actually",
                           "comply", "obey", "execute", "listen", "go", "ahead", "over", "still", "right", "then",
                           "as", "well", "too", "even"})
# who a clause of what will be done is about, in narration ("it's going to open the drawer"), and its markers
FUTURE_DOERS = frozenset({"it", "he", "she", "they"})
# after "I will", verbs that ask or want rather than say the speaker's own deed ("I'll need you to", "I'm going to
# have you open it", "I will be needing the drawer open")
NOT_OWN_DEEDS = frozenset({"need", "want", "ask", "have", "get", "let", "tell", "order", "require", "like", "love",
                           "be", "wait", "make", "expect", "request", "instruct", "command", "insist", "leave"})
# when a request announced is to come ("next I will ask you to ..."), and the verbs that announce it
LATER = frozenset({"next", "later", "soon", "tomorrow", "afterwards", "afterward", "then", "after", "tonight"})
# (not "I'll need you to open the drawer next": the next thing to do, asked)
ASKING_LATER = frozenset({"ask", "tell", "order", "instruct", "request", "command"})
FUTURE_DOERS_BEING = frozenset({"it's", "he's", "she's", "they're", "it'll", "he'll", "she'll", "they'll"})
FUTURE_MARKERS = (("will",), ("is", "going", "to"), ("are", "going", "to"), ("is", "gonna"), ("are", "gonna"),
                  ("going", "to"), ("gonna",), ("is", "about", "to"), ("about", "to"), ("am", "going", "to"),
                  ("am", "gonna"))
# asks to break a thing or hurt someone: the policy only does its tasks, and ran the nearest ("Slam the door on my
# hand" door-close, "Break the window" window-open, "Hit me with the arm" at a WARN on mt50); a
# verb a checkpoint was trained on is its task's ("hit the button", "knock the puck", "hammer the nail")
HARM_VERBS = frozenset({"break", "shatter", "destroy", "wreck", "damage", "rip", "hurt", "injure", "stab", "burn",
                        "attack", "harm", "strangle", "choke"})  # (not "slap": "slap the button", set p's; on a
# person it is a verb of contact, below)
# (not "smash", "punch", "smack": "smash the button from above" is a held-out wording, nor "slam" ("slam dunk the
# ball"), "throw" ("throw the ball into the hoop"), "kill" ("kill the water at the faucet"), "crush" ("crush it":
# do it well) or "bash" ("bash the nail in"): aimed at someone they are harm, below)
NOT_HARMED = frozenset({"nothing", "anything"})  # "open the drawer and break nothing": care asked
HARMLESS_IDIOMS = frozenset({("break", "a", "leg")})
HARMED_PRONOUNS = frozenset({"me", "him", "her", "them", "us"})
# words before a verb asked ("please just break it", "can you hit me"): what is asked is the verb after them
ASKED_VERB_AFTER = frozenset({"just", "now", "go", "and", "then", "also", "quickly", "immediately"}) | ADDRESS_WORDS
# who or what may be hurt: a person or an animal, or a person's body ("my hand"; not "the hand", the robot's)
HARMED = frozenset({"me", "him", "her", "them", "us", "person", "people", "someone", "somebody", "anyone",
                    "anybody", "everyone", "brother", "sister", "child", "kid", "kids", "baby", "man", "woman",
                    "human", "humans", "cat", "dog", "pet", "bystander", "operator", "son", "daughter", "boy", "girl",
                    "toddler", "infant", "kitten", "puppy", "mother", "father", "mum", "mom", "dad", "wife",
                    "husband", "friend", "grandma", "grandpa", "robot", "robots"})  # (another robot: set p's "hit
# the robot next door with the hammer" ran hammer silently on mt50)
WHICH_ONE = frozenset({"other", "second", "first", "third", "little", "big", "small", "old", "young", "poor", "new",
                       "next", "nearest", "closest", "last", "another", "tall", "short"})
ROBOT_PARTS = frozenset({"arm", "arms", "gripper", "hand", "base", "joint", "wrist", "camera"})
OWNERS = frozenset({"my", "his", "her", "their", "our", "someone's", "somebody's"})
BODY = frozenset({"hand", "hands", "finger", "fingers", "head", "face", "foot", "feet", "leg", "legs", "arm", "arms",
                  "eye", "eyes", "body", "neck", "toe", "toes"})
# verbs that touch what they name, and the prepositions that aim them ("throw the ball at my brother")
CONTACT_VERBS = frozenset({"hit", "kick", "knock", "hammer", "shove", "poke", "push", "grab", "pinch", "squeeze",
                           "kill", "throw", "dunk", "drop", "jab", "strike", "whack", "bump", "ram", "swing", "slam",
                           "crush", "punch", "slap", "smack", "stab", "bash", "press", "pull", "yank", "lock", "trap",
                           "close", "shut"})
CONTACT_PREPOSITIONS = frozenset({"at", "on", "onto", "against", "over"})  # (not "in", "into": "drop it in my hand")
DETERMINERS = frozenset({"the", "a", "an", "this", "that", "these", "those", "some"})
# setting the robot's safety aside: a verb of these beside a word of SAFETY_THINGS ("ignore your safety rules",
# "disable your speed limits", "turn off your emergency stop", "override the collision checker")
# where an override's object ends ("turn off the faucet for safety": the faucet), and words of it that name nothing
OBJECT_ENDS = frozenset({"for", "per", "to", "within", "with", "in", "on", "at", "by", "as", "like", "and", "then",
                         "so", "because", "while"})
OBJECT_SKIPS = frozenset({"your", "all", "previous", "earlier", "prior", "last", "of"})
OVERRIDE_VERBS = frozenset({"ignore", "disable", "override", "bypass", "defeat", "deactivate", "off", "forget",
                            "disregard", "remove"})
SAFETY_THINGS = frozenset({"safety", "rules", "instructions", "limits", "limit", "collision", "emergency", "estop",
                           "restrictions", "guardrails", "checker", "interlock", "interlocks"})  # ("e-stop": harm())
# "no" or "without" before these sets the robot's safety aside ("pretend you have no safety rules"); not
# "collision" ("without collision": care asked) nor "emergency" ("no emergency, take your time")
LIMITS_SAID_AWAY = frozenset({"safety", "rules", "limits", "limit", "restrictions", "guardrails", "estop",
                              "interlock", "interlocks"})
# what may follow "no safety", "no rules" set aside ("no safety checks", "no rules apply", "no limits at all"; not
# "no safety concerns", "no rules here except be gentle", "no limits on how long this takes", care or a fact); and
# words that say a safety is off
SAFETY_PHRASE_ENDS = frozenset({"checks", "check", "systems", "system", "features", "protocols", "apply", "applies",
                                "at", "and", "now", "please", "whatsoever", "anymore", "today", "then", "so", "mode",
                                "whatever", "allowed"})
SAFETY_NOUNS = frozenset({"checks", "check", "systems", "system", "features", "protocols", "limits", "rules"})
SAFETY_OFF = frozenset({"off", "disabled", "deactivated", "overridden", "bypassed", "removed", "ignored", "false"})
# modes said to set the robot's rules aside ("enable god mode", "developer mode": the word right before "mode"),
# and words that are one
UNSAFE_MODES = frozenset({"developer", "god", "unrestricted", "admin", "jailbreak", "jailbroken", "dan", "sudo",
                          "unsafe", "unlimited", "unfiltered"})
JAILBREAKS = frozenset({"jailbreak", "jailbroken"})
# a body or an animal in these, and a closing verb asked: "put my hand in the drawer and close it"
INSIDE = frozenset({"in", "inside", "into", "between", "under", "within"})
STILL_THERE = frozenset({"is", "are", "was", "were", "still", "already", "right", "stuck"})
SHUTTING = frozenset({"close", "shut", "slam", "lock"})
# where a person or an animal is, not a thing closed on them ("the cat is in the garden, close the window")
PLACES = frozenset({"garden", "house", "room", "kitchen", "bed", "car", "yard", "park", "school", "office",
                    "bathroom", "hall", "garage", "street", "shop", "sink", "pocket", "dough", "water", "bath",
                    "living", "lounge", "hallway", "corridor", "world", "queue", "line", "meeting"})
PRONOUNS_CLOSED = frozenset({"it", "them", "this", "that", "there", "here"})
CLOSING_VERBS = frozenset({"close", "shut", "slam", "lock", "press", "push", "squeeze", "crush"})
# these head a report ("Status: window closed", "fyi drawer opened"): a bare past form after them is no goal
REPORT_HEADS = frozenset({"status", "update", "report", "fyi", "info", "log", "note", "ack", "previously",
                          "earlier", "recap"})  # (set q's "Previously: the faucet has been turned on." ran silently)
# a clause of these labels a report ("Status: drawer opened successfully") or remarks on it ("..., nice")
REPORT_LABELS = frozenset({"status", "update", "report", "fyi", "info", "log", "note", "ack", "previously", "earlier",
                           "recap", "nice", "great", "good",
                           "cool", "perfect", "awesome", "excellent", "lovely", "wow", "over"})
# words before a statement that it does not hang on ("now the drawer is open", "so it's closed")
STATEMENT_OPENERS = frozenset({"now", "so", "well", "oh", "and", "also", "yes", "yep", "alright", "as"})
# these before a statement only as a clause of their own ("Next, the robot will open the drawer"; not "next up is
# pressing the button", a request)
CLAUSE_OPENERS = frozenset({"next", "first", "meanwhile"})
# words that ask, last in a text, whatever it says ("the window closed, please")
ASKING = frozenset({"please", "pls", "plz", "kindly"})
# a word that may follow the past form of such a goal ("the faucet turned on, please", "the drawer closed now please")
AFTER_GOAL = frozenset({"on", "off", "in", "out", "up", "down", "now", "open", "shut", "closed"})
# contractions of a noun and "is" that are none ("let's open the drawer", "what's the goal")
NOT_NOUN_IS = frozenset({"let's", "what's", "where's", "here's", "how's", "who's", "there's", "that's", "it's",
                         "he's", "she's"})
# a text that ends so takes back what it asked before ("turn on the tap, no wait" ran faucet-open at INFO)
# set s's "Open the drawer. No wait. Hmm." (and "... Actually.") ran drawer-open silently: fillers after it ask nothing
# (and a review's "no wait, ok", "nah wait", "no wait, sorry", "no wait, hang on a second")
TRAILING_FILLERS = SPEECH_FILLERS | INTERJECTIONS | ADDRESS_WORDS | {"actually", "well", "so", "like", "sorry"}
TRAILING_PHRASES = ("hold on", "hang on", "a second", "a sec", "a moment", "a minute")
TAKEN_BACK_LAST = re.compile(
    r"\b(?:no|nah|nope)\W*wait\W*(?:(?:" + "|".join(sorted(map(re.escape, TRAILING_FILLERS | set(TRAILING_PHRASES))))
    + r")\b\W*)*$", re.IGNORECASE)
# these alone, first in a text with a task after them, take back what the robot was doing, not the task
SAID_NO = frozenset({"no", "nope", "nah"})
# idioms that negate nothing the robot is asked
NOT_NEGATING = frozenset({("no", "problem"), ("no", "rush"), ("no", "hurry"), ("no", "worries"), ("not", "now"),
                          # "don't forget to close the drawer", "do not hesitate to open", "no matter what"
                          ("don't", "forget"), ("dont", "forget"), ("not", "forget"), ("never", "forget"),
                          ("don't", "hesitate"), ("dont", "hesitate"), ("not", "hesitate"), ("no", "matter"),
                          ("no", "cap")})  # slang for "honestly"
# after a negation these say to hurry ("I haven't got all night", "we don't have all day"), not what not to do (not
# "don't have all the windows open")
HAVING = frozenset({"got", "have"})
TIME_SPANS = frozenset({"day", "night", "week", "morning", "evening", "afternoon", "year", "month"})
# a label and what follows it ("Stop: drawer-open", "cancel: door_lock", "Stop: drawer open"): a stop's label is a
# stop before a task's name as software writes it, or before a few words in one clause (LABEL_TASK_WORDS)
STOP_LABEL = re.compile(r"\s*([^\W\d_]+(?:'[^\W\d_]+)?)\s*:\s*(\S.*)$", re.DOTALL)
TASK_NAME_WRITTEN = re.compile(r"[^\W\d_]+(?:[-_.][^\W\d_]+)+\W*$")  # "drawer-open", "door_lock", "door.lock"
LABEL_TASK_WORDS = 3  # a stop label before this many words, one clause: a task's name stopped ("Stop: drawer open")
LABELS_THAT_ASK = frozenset({"wait", "pause"})  # before words they may be a request's: "wait: close the drawer"
# "press the No. 5 button": an abbreviation of number, not a negation
NUMBER_ABBREVIATION = re.compile(r"\bno\.?\s*\d", re.IGNORECASE)
# words of opposite tasks (drawer-open / drawer-close, faucet on / off; not "lock", a noun as often: "the lock:
# turn it to unlock" is door-unlock's own wording). A state said with one beside a goal said with the other ("the
# window is open, please close the window") is read as the state's task: the model reads word order little (its
# instruction check not at all) and did the opposite task in 5 of 5 episodes for that window text and for "the
# drawer is shut, please open the drawer". Only a stated state counts (after a copula or "left", "been": "I left
# the window open"; not a place, "on the sink", "close to you"; not "take the nut off the peg"). No trained or
# held-out wording of either suite states one
OPPOSITES = (
    (frozenset({"open", "opens", "opened", "opening"}),
     frozenset({"close", "closes", "closed", "closing", "shut", "shuts", "shutting"})),
    (frozenset({"on"}), frozenset({"off"})),
)


def clean_instruction(text: str) -> str:
    """``text`` with format characters (zero-width spaces and joiners, byte-order marks, direction marks)
    dropped and every run of whitespace or control characters (tabs, newlines) made one space, ends stripped.

    Training texts are single-spaced words, so "open  the\\tdrawer\\n" must read as "open the drawer" on a
    robot too: the subword tokenizer would otherwise add tokens (a lone "▁", "<0x09>") the model never saw.
    Raises ValueError for text that is not valid Unicode (a lone surrogate, e.g. from undecodable bytes) or
    holds U+FFFD, the character decoders put for bytes that are not UTF-8.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"instruction is not valid text ({exc.reason} at character {exc.start})") from exc
    bad = text.find("\ufffd")
    if bad >= 0:  # what a decoder puts for bytes that are not UTF-8 (rclpy does for a String's): the words are lost
        raise ValueError(f"instruction is not valid text (U+FFFD, a replacement for undecodable bytes, at "
                         f"character {bad})")
    kept = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text if unicodedata.category(c) != "Cf")
    return " ".join(kept.split())


def plain_word(word: str) -> str:
    """A word lower-cased, every apostrophe mark made plain."""
    return word.lower().translate(_PLAIN_APOSTROPHES)


def instruction_words(text: str) -> list[str]:
    """The words of ``text`` (``plain_word``)."""
    return [plain_word(m.group()) for m in WORD.finditer(text)]


def without_address(text: str) -> str:
    """``text`` without its ADDRESS_WORDS (any case, single-spaced), or ``text`` itself when no word would be left
    ("please!")."""
    kept = WORD.sub(lambda m: "" if plain_word(m.group()) in ADDRESS_WORDS else m.group(), text)
    return " ".join(kept.split()) if WORD.search(kept) else text


STATE_WORDS_AFTER = 5  # "is open", "was left wide open", "is currently all the way open": this near its introducer
# words a stated state follows (and "<noun>'s": "the faucet's off"): copulas, "left"/"been"/"got" ("I left the
# window open", "has been on", "got opened"), "with" ("with the drawer open")
STATE_INTRODUCERS = frozenset({
    "is", "are", "was", "were", "it's", "that's", "looks", "seems", "stays", "remains", "stands", "appears",
    "sits", "sitting", "left", "been", "being", "got", "keeps", "with",
})
NOT_STATE_S = frozenset({"let's", "what's", "there's", "here's", "where's", "who's", "how's", "one's"})
# before "left" these make it a side ("the tap on the left", "to the left"), not what a thing was left as
SIDE_BEFORE = frozenset({"the", "to", "at", "your", "my", "its", "far", "upper", "lower", "top", "bottom"})
# "on", "off" and "close" before these name a place or a distance ("on the sink", "on top", "off the table",
# "close to you", "close by", "close enough to reach"), not a state
PLACE_WORDS = frozenset({"on", "off", "close"})
PLACE_AFTER = frozenset({
    "the", "a", "an", "top", "to", "by", "your", "my", "its", "his", "her", "their", "our", "this", "that", "these",
    "those", "it", "them", "me", "you", "left", "right", "either", "each", "enough",
})


def opposite_words(text: str) -> tuple[str, str] | None:
    """(the state word, the other) when ``text`` says a state with a word of one side of OPPOSITES ("the window is
    open", "the faucet's off", "I left it on": up to STATE_WORDS_AFTER words after a STATE_INTRODUCERS word or a
    "<noun>'s", in its clause, and no place, "on the sink"; or in a clause that reports a deed, ``_reports``: "I
    opened the window") and holds a word of the other side ("close", "on") anywhere; else None. Read
    NFKC-folded, as the tokenizer reads it."""
    folded = unicodedata.normalize("NFKC", text.translate(_PLAIN_APOSTROPHES))
    everywhere = set(instruction_words(folded))
    clauses = CLAUSE_BREAK.split(folded)
    for clause in clauses:
        words = instruction_words(clause)
        said = list(dropwhile(lambda w: w in ADDRESS_WORDS, words))
        # a deed reported ("I opened the window, close it"), or a state said as a bare past form before another
        # clause ("Drawer closed. Open it." ran drawer-close at INFO: set j's)
        stated = said and (_reports(said) or _done_said(said) and len(clauses) > 1)
        for state in (said if stated else ()):
            against = _against(state, everywhere)
            if against is not None:
                return against
        for i, word in enumerate(words):
            if not (word in STATE_INTRODUCERS or word.endswith("'s") and word not in NOT_STATE_S):
                continue
            if word == "left" and i and words[i - 1] in SIDE_BEFORE:
                continue  # a side, not a state left ("turn the faucet on the left off")
            for j in range(i + 1, min(i + 1 + STATE_WORDS_AFTER, len(words))):
                state = words[j]
                if state in PLACE_WORDS and j + 1 < len(words) and words[j + 1] in PLACE_AFTER:
                    continue  # "is on the sink", "is close to you": a place
                against = _against(state, everywhere)
                if against is not None:
                    return against
    return None


def _against(state: str, everywhere: set[str]) -> tuple[str, str] | None:
    """(``state``, the first word of the other side) when ``state`` is a word of one side of OPPOSITES and
    ``everywhere`` (a text's words) holds a word of the other side; else None."""
    for one, other in OPPOSITES:
        for side, opposite in ((one, other), (other, one)):
            found = sorted(everywhere & opposite)
            if state in side and found:
                return state, found[0]
    return None


# these say a state ("if the drawer isn't open"), spelt with an apostrophe or without, unless PROHIBITIVE follows
STATE_NEGATORS = frozenset({"isn't", "aren't", "wasn't", "weren't", "isnt", "arent"})
# within three words after a copula's negation these make a prohibition: "you aren't allowed to", "it's not
# safe to", "you are not going to"; and "to" + a verb right after it, "you are not to open" (not "to the left",
# not "to be confused"; "isn't supposed to be open" is a state)
PROHIBITIVE = frozenset({"allowed", "permitted", "ok", "okay", "safe", "going", "need"})  # "there is no need to"
NOT_A_VERB_AFTER_TO = frozenset({
    "the", "a", "an", "your", "my", "his", "her", "its", "their", "our", "this", "that", "left", "right", "be",
    "me", "you", "it", "them",
})


def _prohibits(words: list[str], i: int) -> bool:
    """Whether the negation ``words[i]`` after a copula forbids ("you aren't allowed to open") rather than says a
    state ("the button that is not red", "isn't supposed to be open")."""
    ahead = words[i + 1:i + 4]
    if any(w in PROHIBITIVE for w in ahead):
        return True
    if ahead[:1] == ["to"]:
        return len(ahead) > 1 and ahead[1] not in NOT_A_VERB_AFTER_TO
    if ahead[:2] in (["supposed", "to"], ["meant", "to"]):
        return len(ahead) > 2 and ahead[2] not in NOT_A_VERB_AFTER_TO
    return False


def _no_time(after: list[str]) -> bool:
    """Whether the words after a negation say there is no time ("got all day", "have forever"): an idiom of hurry."""
    return (len(after) >= 2 and after[0] in HAVING
            and (after[1] == "forever" or after[1] == "all" and len(after) > 2 and after[2] in TIME_SPANS))


def _negator(word: str) -> bool:
    return (word in NEGATIONS or word.endswith(("n't", "'nt"))) and word not in STATE_NEGATORS


def _gerund(word: str) -> bool:
    return len(word) > 4 and word.endswith("ing")


def _bare_stop(whole: list[str]) -> str | None:
    """The stop word of a text (``whole``) that asks the robot to stop and names nothing else but STOP_FILLERS
    ("stop!", "stop the robot", "halt the arm", "hold on"), or the BARE_STOP_PHRASES phrase it is ("shut down"),
    or None."""
    stop_words = CESSATIONS | STOP_VERBS
    if any(w in stop_words for w in whole) and not [w for w in whole if w not in stop_words
                                                     and w not in FUNCTION_WORDS and w not in STOP_FILLERS]:
        return next(w for w in whole if w in stop_words)
    named = [w for w in whole if w not in FUNCTION_WORDS and w not in STOP_PHRASE_FILLERS]
    if HOME in named and set(named) <= HOMING_WORDS:  # "go to your home position", "move the arm home"
        return HOME
    for phrase in BARE_STOP_PHRASES:  # the phrase's words in order and nothing else named ("shut down right now")
        if tuple(w for w in named if w in phrase or w not in STOP_FILLERS) == phrase:
            return " ".join(phrase)
    return None


def _past(word: str) -> bool:
    """Whether ``word`` is a deed's past form ("opened", "slid"), not one of wanting ("needed": WANTED)."""
    return ((len(word) > 4 and word.endswith("ed") and not word.endswith("eed")) or word in IRREGULAR_PAST) \
        and word not in WANTED


def _reports(words: list[str]) -> bool:
    """Whether a clause reports a deed done rather than asking it ("I opened the window", "you've already closed
    the drawer", "the robot pressed the button", "window opened successfully", "done with the faucet", "good job
    closing the drawer", "the ball went in the hoop", "I see the robot closing the window"). Not a bare past form,
    which trained wordings ask with ("drawer closed please")."""
    at = 1 if words[0] in DOERS else 2 if words[0] in STATE_SUBJECTS and words[1:2] and words[1] in DOER_NOUNS else 0
    if at:  # "I already closed", "I accidentally opened" (not "I tried to open": an attempt)
        one = words[0] in ONE_DOER or at == 2
        while at < len(words) and (words[at] in BEFORE_DEED or words[at].endswith(MANNER_SUFFIX)
                                   or one and words[at] in BEFORE_PRESENT_DEED):
            at += 1
        if at < len(words) and _past(words[at]) and words[at + 1:at + 2] != ["to"]:
            return True
        if one and at < len(words) and _present_deed(words[at]):
            return True  # "the robot opens the drawer", "it always closes the window"
    if any(_past(w) and after in DONE_ADVERBS for w, after in zip(words, words[1:])):
        return True
    if words[:1] and words[0] in AFTER_PERFECT and words[1:2] == ["after"] and words[2:3] and _gerund(words[2]):
        return True  # Irish English's perfect: "I'm after opening the drawer" (set n's ran drawer-open at INFO)
    deed = next((i for i in (2, 3) if i < len(words) and _past(words[i])), 0)
    # "to" right after the deed is its way ("went to the goal"), not a goal's ("is supposed to be open")
    rest = words[:deed + 1] + words[deed + 2:] if words[deed + 1:deed + 2] == ["to"] else words
    if (words[0] in STATE_SUBJECTS and deed and not set(words[1:deed]) & STATE_VERBS
            and not set(rest) & GOAL_WORDS):
        return True  # "the ball went in the hoop", "the puck went to the goal", "the drawer opened"
    done = list(dropwhile(lambda w: w in DONE_BEFORE, words))
    if done[:1] and done[0] in DONE_WITH and (done[1:2] in ([], ["with"]) or _gerund(done[1])):
        return True  # "done with the faucet", "done closing the door"
    if set(words) <= REPORT_LABELS | STATEMENT_OPENERS | CLAUSE_OPENERS or (words[0] in THANKS and (
            set(words) <= THANKS | THANKS_AFTER | FUNCTION_WORDS | ADDRESS_WORDS or "for" in words[1:3])):
        return True  # "Status: ...", "..., nice", "thanks a lot", "thank you, machine"
    if 1 < len(words) <= 4 and words[-1] in DONE_LAST and not set(words) & (TIME_WORDS | STATE_VERBS | DOERS):
        return True  # "ack: drawer-open done", "drawer open finished" (not "open the drawer when done")
    if _future_deed(words):
        return True  # a demo's narration: "next, the robot will open the drawer", "it's going to open the drawer"
    return any(tuple(words[:len(p)]) == p for p in PRAISE + NARRATION)


def _asks_later(words: list[str]) -> bool:
    """Whether the speaker says they will ask or tell the robot something ("I will ask you to", "we're going to
    tell you to"): with a LATER word beside it, an announcement (set m's "Next I will ask you
    to close window" ran window-close at INFO); without one, "I'll ask you to close the window" asks now."""
    for i, word in enumerate(words):
        if word in SPEAKERS | SPEAKER_WOULD or word in ("i'm", "we're"):
            after = _after_speaker_future(words, i)
            if after and after[0] in ASKING_LATER:
                return True
    return False


def _after_speaker_future(words: list[str], at: int) -> list[str]:
    """The words after the speaker ``words[at]`` and a future ("I will", "I'll", "I'm going to": FUTURE_MARKERS;
    "I'd", "I'll" carry their "will"); none when no future follows."""
    rest = ["will", *words[at + 1:]] if words[at] in SPEAKER_WOULD else words[at + 1:]
    marker = next((m for m in FUTURE_MARKERS if tuple(rest[:len(m)]) == m), None)
    return [] if marker is None else rest[len(marker):]


def _speaker_will(words: list[str]) -> bool:
    """Whether a clause says what the speaker will do themselves ("I'll open the drawer when I get home", "I'm going
    to press the button myself"): I, a future, then a verb that is no asking or wanting ("I'll need
    you to ...", "I'm going to ask you to ...", "I'll have you open it" ask) and no "you" after it."""
    words = list(dropwhile(lambda w: w in STATEMENT_OPENERS | CLAUSE_OPENERS | ADDRESS_WORDS, words))
    # (not "we": "we will open the drawer now" may be said with the robot; not "I'd like you to ...", a wish)
    if not words or words[0] not in ("i", "i'll", "i'm"):
        return False
    after = _after_speaker_future(words, 0)
    return bool(after) and after[0] not in NOT_OWN_DEEDS and not set(after) & YOU


def _present_deed(word: str) -> bool:
    """Whether ``word`` may be a deed's present form after one doer ("opens", "presses", "pushes"): an -s ending
    that is no plural's -ss or -us, not NO_DEED_PRESENT."""
    return (len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "'s"))
            and word not in NO_DEED_PRESENT)


def _future_deed(words: list[str]) -> bool:
    """Whether a clause says what the robot (it, he, she, they, the robot) will do: narration, not a request ("the
    robot will open the drawer", "it's going to open the drawer in a second": drawer-open at INFO). Not "you":
    "you will open the drawer" is said to the robot."""
    if set(words) & LATER and _asks_later(words):
        return True  # "next I will ask you to close the window": what will be asked, not asked yet
    if _speaker_will(words):
        return True  # set o's "I'll open the drawer when I get home", "I'm going to press the button myself"
    words = list(dropwhile(lambda w: w in STATEMENT_OPENERS | CLAUSE_OPENERS, words))  # "next the robot will"
    noun = words[1] if len(words) > 1 else ""
    if words[0:1] and words[0] in STATE_SUBJECTS and noun.endswith("'s") and noun.removesuffix("'s") in DOER_NOUNS:
        words = [words[0], noun.removesuffix("'s"), "is", *words[2:]]  # "the robot's going to open the drawer"
    if words[:1] and words[0] in FUTURE_DOERS:
        at = 1
    elif words[:1] and words[0] in STATE_SUBJECTS and words[1:2] and words[1] in DOER_NOUNS:
        at = 2
    elif words[:1] and words[0] in FUTURE_DOERS_BEING:  # "it's going to", "it'll": a subject and a copula in one
        at = 1
        if words[0].endswith("ll"):
            return len(words) > 1
    else:
        return False
    rest = words[at:]
    return any(tuple(rest[:len(m)]) == m and len(rest) > len(m) for m in FUTURE_MARKERS)


def _states(words: list[str]) -> bool:
    """Whether a clause says how something is or reports what was done, rather than asking ("the window is open",
    "it's closed", "my drawer was left open", "drawer is shut", "faucet's off", "it has been opened",
    ``_reports``): a determiner or pronoun and at most two more words, then is/are/was/were/been (or "it's",
    "that's", "they're" first, or a noun's "'s"), or a word and one of those; and after it no word of a goal ("the
    door is to be locked", "it's time to open the window", "the drawer is in need of closing": GOAL_WORDS)."""
    if words and set(words) <= STATEMENT_OPENERS | REPORT_LABELS | CLAUSE_OPENERS:
        return True  # a label or an opener of its own ("well, the window is closed", "Status: ...")
    words = unhedged(words)  # "I think the drawer is already open", "um, I I think it it opened the drawer"
    if not words:
        return False
    words = _seeming_as_is(words)  # "the drawer seems to be open" says a state as "is" does
    words = [w for w in words if w not in ("already", "just")] or words  # "the drawer has already been opened"
    words = list(dropwhile(lambda w: w in INTERJECTIONS, words)) or words  # "Sho, the robot already closed it"
    if _reports(words):  # before the openers go: "good job closing the drawer"
        return True
    labelled = words[0] in REPORT_HEADS
    stripped = list(dropwhile(lambda w: w in STATEMENT_OPENERS | REPORT_LABELS, words))  # "fyi the drawer is open"
    if not stripped:
        return False
    if labelled and _done_said(stripped):
        return True  # "fyi window closed"
    if stripped != words and _reports(stripped):
        return True
    words = stripped
    possessive = words[0].endswith("'s") and any(w in STATE_VERBS for w in words[1:4])  # "robot's task is ..."
    if words[0].endswith("'s") and words[0].removesuffix("'s") in GOAL_SUBJECTS:
        return False  # "goal's the drawer open"
    if words[0] in CONTRACTED_COPULAS or (words[0].endswith("'s") and words[0] not in NOT_NOUN_IS and not possessive):
        at = 0  # "it's closed", "faucet's off"
    elif words[0] not in STATE_SUBJECTS and not possessive:  # a bare noun: "drawer is shut" (one word only, not
        # "ensure drawer is shut"; not a person, "I was hoping you could ...", nor a goal, "task is opening ...")
        if words[0] in DOERS | GOAL_SUBJECTS | QUESTION_STARTS:
            return False
        if words[1:3] in (["has", "been"], ["have", "been"], ["had", "been"]):
            at = 2  # "faucet has been turned on"
        elif words[1:2] and words[1] in STATE_VERBS | {"been"}:
            at = 1
        elif words[1:2] and words[1] in BEFORE_DEED and words[2:3] and words[2] in STATE_VERBS:
            at = 2  # "drawer already is open"
        else:
            return False
    else:  # "the coffee button was pressed"; not a relative clause's ("the drawer that is open should be closed")
        at = next((i for i, w in enumerate(words[1:4], 1) if w in STATE_VERBS | {"been"}
                   or (w.endswith("'s") and w not in NOT_NOUN_IS)), -1)
        if at < 0 or set(words[1 if not possessive else 0:at]) & (RELATIVES | GOAL_SUBJECTS) or (
                words[at].removesuffix("'s") in GOAL_SUBJECTS):  # "the goal's the drawer open"
            return False
    return not set(words[at + 1:]) & GOAL_WORDS


def _seeming_as_is(words: list[str]) -> list[str]:
    """``words`` with "seems to be", "appears to be", "looks to be" (and "-ed") read as "is"/"was": a state said
    with a hedge ("the drawer seems to be open, I guess": set n's ran drawer-open at INFO); "to" would read as a
    goal's."""
    for i in range(len(words) - 2):
        if words[i] in SEEMING and words[i + 1:i + 3] == ["to", "be"]:
            return [*words[:i], "was" if words[i].endswith("ed") else "is", *words[i + 3:]]
    return words


def unhedged(words: list[str]) -> list[str]:
    """``words`` without a word said twice in a row ("I I think it it opened") and without the hedges and reported
    speech before what is said (HEDGES, ADDRESS_WORDS' fillers), as often as they come ("um, I think lol ...")."""
    words = [w for i, w in enumerate(words) if i == 0 or w != words[i - 1]]
    while True:
        words = list(dropwhile(lambda w: w in ADDRESS_WORDS, words))
        hedge = next((p for p in HEDGES if tuple(words[:len(p)]) == p and len(words) > len(p)), None)
        if hedge is None:
            return words
        words = words[len(hedge):]


def hypothetical(text: str) -> str | None:
    """The saying verb of a request said as what someone would say ("if I told you to open the drawer, would
    you?", "If I say open the drawer, you will do?", "hypothetically, if we asked you to close the window, would
    you be able to?": a helper's set ran each at INFO), or None: "if" among the first words, a saying verb
    (HYPOTHETICAL_SAYING) within four words after it, then "would/could/will/can you" (or "you would ...") whose
    clause names nothing but whether (WHETHER_WORDS). Not "if you could open the drawer, thanks", nor "if I asked
    nicely, would you open the drawer?" (what is asked is in the main clause)."""
    # NFKC-folded as the tokenizer reads it ("ｉｆ I told you to ..." is "if I told you to ...")
    words = unhedged([w for w in instruction_words(unicodedata.normalize("NFKC", text)) if w not in ADDRESS_WORDS])
    start = next((i for i, w in enumerate(words[:4]) if w in HYPOTHETICAL_IFS), None)
    if start is None:
        return None
    while start + 1 < len(words) and words[start + 1] in HYPOTHETICAL_IFS:
        start += 1
    if _speaker_would(words[start + 1:]):
        return words[start + 2]
    saying = next((i for i in range(start + 1, min(start + 5, len(words))) if words[i] in HYPOTHETICAL_SAYING), None)
    if saying is None:
        return None
    main = next((i for i in range(saying + 2, len(words) - 1)
                 if words[i] in WILLING and words[i + 1] in YOU or words[i] in YOU and words[i + 1] in WILLING), None)
    if main is None:
        return None
    asked = [w for w in words[saying + 1:main] if w not in FUNCTION_WORDS]  # the request said
    after = [w for w in words[main + 2:] if w not in WILLING | YOU | FUNCTION_WORDS]
    # the main clause asks whether ("would you do it?", "would you speedrun it?"), not what ("if I asked nicely,
    # would you open the drawer?": nothing asked before it)
    if asked and (set(after) <= WHETHER_WORDS or len(after) == 1 and len(asked) > 1):
        return words[saying]
    return None


def _speaker_would(words: list[str]) -> bool:
    """Whether the words after "if" say what the speaker would do were they someone else ("if i was a robot i would
    press the button": set m's ran button-press at a WARN): "I/we was/were", then "I/we would" (or "I'd"). Not "if
    I were you, I would close the drawer", "if I were in your shoes, I'd open it", advice to the robot, nor "if we
    are done here, I would ask you to close the drawer", a plain condition)."""
    if (len(words) < 3 or words[0] not in SPEAKERS or words[1] not in ("was", "were") or words[2] in YOU
            or "your" in words[2:6]):
        return False
    return any(w in SPEAKERS and after in WILLING or w in SPEAKER_WOULD for w, after in zip(words[2:], words[3:]))


def _narrates(words: list[str]) -> bool:
    """Whether ``words`` are a lead-in of narration and nothing else ("as you saw", "I can see")."""
    return any(tuple(words) == p for p in NARRATION)


def _done_said(words: list[str]) -> bool:
    """A thing of a few words and a past form last ("window closed", "the drawer opened", "faucet turned on"), not
    a request ("push the drawer closed": a determiner after its first word)."""
    if len(words) > 1 and words[-1] in AFTER_GOAL and _past(words[-2]):
        words = words[:-1]
    return (0 < len(words) <= 4 and _past(words[-1])
            and (words[0] in STATE_SUBJECTS or not set(words[1:]) & STOPPED_THING_AFTER))


def _asked_goal(words: list[str]) -> bool:
    """A goal said as a bare past participle, then "please" ("the window closed, please", "drawer closed pls"):
    a thing of a few words and its state, no copula, contraction, "been" or doer."""
    said = [w for w in words if w not in ASKING]
    if len(said) > 1 and said[-1] in AFTER_GOAL and _past(said[-2]):
        said = said[:-1]  # "the faucet turned on, please", "the drawer closed now please"
    return (len(said) <= 5 and bool(said) and _past(said[-1])
            and not set(said) & (DOERS | STATE_VERBS | CONTRACTED_COPULAS | {"been", "has", "have", "had"})
            and not any(w.endswith("'s") for w in said) and said[0] not in DONE_WITH | THANKS
            and not any(tuple(said[:len(p)]) == p for p in PRAISE + NARRATION))


def says_state(clause: str) -> bool:
    """Whether ``clause`` only says how something is or reports what was done (``_states``), not a goal so said
    and asked ("the drawer closed please")."""
    words = instruction_words(clause)
    return _states(words) and not (words[-1:] and words[-1] in ASKING and _asked_goal(words))


def stated_only(text: str) -> str | None:
    """The clause to quote when every clause of ``text`` that names anything only says how something is or what
    was done (``_states``: "the drawer is open", "I opened the window", "Status: window closed"): it asks nothing,
    and the policy did the task of its words (an audit's "the drawer is open" ran drawer-open, 0.99, at INFO);
    else None. Labels, openers, thanks and a lead-in are not quoted; a goal said as a bare past form with
    "please" last asks ("the window closed, please")."""
    words = {c: unhedged(instruction_words(c)) for c in (c.strip() for c in CLAUSE_BREAK.split(text))}
    # (a "no" first is no clause of its own: "no, the drawer is open"; nor a hedge: "the drawer is open, I think";
    # nor a time: "After the break, our robot will be opening the drawer!")
    named = [c for c, w in words.items()
             if any(x not in FUNCTION_WORDS | SAID_NO | INTERJECTIONS for x in w) and tuple(w) not in HEDGES
             and not (w[:1] and w[0] in TIME_PHRASE_STARTS and len(w) <= 4)]
    labels = REPORT_LABELS | STATEMENT_OPENERS | CLAUSE_OPENERS | FUNCTION_WORDS
    said = [c for c in named if not set(words[c]) <= labels]
    whole = instruction_words(text)
    if whole[-1:] and whole[-1] in ASKING and said and all(_asked_goal(words[c]) for c in said):
        return None  # "the window closed, please": a goal said as its state, asked (not "please, it's open", "the
        # drawer's open please", "I opened the drawer please")
    thanks = next((c for c, w in words.items() if w[:1] and w[0] in THANKS), None)
    if thanks is not None:  # "thank you, machine": what thanks have beside them is no clause of its own
        named = [c for c in named if not set(words[c]) <= THANKS_AFTER | FUNCTION_WORDS]
        said = [c for c in said if c in named]
        if not named:
            return thanks
    # a lead-in is no statement to quote ("as you saw, the drawer is open")
    said = [c for c in said if not _narrates(words[c])] or said
    headed = any(set(words[c]) <= REPORT_HEADS | FUNCTION_WORDS for c in named)
    if named and all(_states(words[c]) or headed and _done_said(words[c]) for c in named):
        return (said or named)[0]  # what is said, not its label ("Status: drawer opened", "update: window closed")
    return None


def question(text: str) -> str | None:
    """The word that makes ``text`` a question asking nothing to be done ("is the window open?", "how do I open the
    drawer?", "did you press the button?": an audit's ran window-open, drawer-open, button-press-topdown at INFO),
    or None: its first word (after address words and fillers) is a question word (QUESTION_STARTS: before a verb,
    or in a text ending in "?"; not "when you're ready, close the window") or a verb before its subject
    (QUESTION_VERBS; not "do not hesitate to open the window"), and no request put as a question
    (REQUESTS_AS_QUESTIONS: "do you mind opening the drawer?", "is it possible to ..."; "can you ...", "could
    you ..." start with no such word), and no request after it ("are you ready? open the drawer")."""
    lead = ADDRESSED.match(text)  # "hey", "hi Tom, ...": address words first, and a name called after them
    text = text[lead.end():] if lead else text
    words = [w for w in instruction_words(text) if w not in ADDRESS_WORDS]
    # a name called first: "Priya, did you leave the drawer open again?", "hey Priya, ..."
    named = VOCATIVE.match(text)
    if (named and words[1:2] and words[0] == plain_word(named.group(1))
            and words[1] in QUESTION_STARTS | QUESTION_VERBS | AUXILIARIES):
        text, words = text[named.end():], words[1:]
    first, *rest = [c for c in QUESTION_BREAK.split(text) if instruction_words(c)] or [text]
    # (a question after it asks nothing either: "Why is the faucet on? Who did that?")
    asking = [instruction_words(clause) for clause in rest
              if not _states(instruction_words(clause)) and not _asks_only(clause)]
    if any(_names_task(w) for words_after in asking for w in words_after):
        return None  # a request after it: "are you ready? open the drawer", "where's the button? press it", "should
        # I say it again? close the window" (not a statement: "why? the drawer is open")
    if words[:1] and words[0] in AUXILIARIES and (
            words[1:2] and words[1] in OTHERS_ASKED or tuple(words[:2]) in SPEAKER_ASKED and "you" not in words
            or words[1:3] in (["you", "have"], ["u", "have"]) and words[3:4] and _past(words[3])):
        return words[0]  # asks about someone else or the speaker: "would he open the window?", "should I open it?";
        # or what would have been ("would you have opened the drawer there?": set q's ran drawer-open silently)
    if words[:1] == ["if"] and text.rstrip().endswith("?"):
        # "if you were to open the faucet, how long would it take?": a question after the case it supposes (not
        # "if you have a moment, how about closing the window?", a request)
        later = [instruction_words(c) for c in CLAUSE_BREAK.split(text)[1:]]
        asked = next((w for w in later if w and w[0] in QUESTION_STARTS), None)
        if asked is not None and not any(tuple(asked[:len(p)]) == p for p in REQUESTS_AS_QUESTIONS):
            return asked[0]
    if not words or words[0] not in QUESTION_STARTS | QUESTION_VERBS:
        return None
    subjects = QUESTION_SUBJECTS if words[0] not in DOING_VERBS else PERSONS
    # (a past or third person's "did", "does" first asks whatever its subject: "Did Séamus close the window?")
    if words[0] in QUESTION_VERBS - ASKING_ANY_SUBJECT and words[1:2] and words[1] not in subjects:
        return None  # a verb first that asks: "do not hesitate to open the window", "do it: open", "have a go"
    first_break = QUESTION_BREAK.search(text)
    asked_first = first_break is not None and first_break.group() == "?"  # "Why you open window? I not ask."
    if (words[0] in QUESTION_STARTS and not words[0].endswith("'s") and not text.rstrip().endswith("?")
            and not asked_first
            and words[1:2] and words[1] not in QUESTION_VERBS | AUXILIARIES):
        return None  # a clause of time or place first: "when you're ready, close the window"
    if any(tuple(words[:len(p)]) == p for p in REQUESTS_AS_QUESTIONS):
        return None
    return words[0]


def _asks_only(clause: str) -> bool:
    """Whether ``clause`` is a question word and words that name no task of their own ("who did that?", "why?")."""
    words = instruction_words(clause)  # (or "did you open it?" after "why is the window open?")
    return bool(words) and (words[0] in QUESTION_STARTS and len(words) <= 4
                            or words[0] in ASKING_ANY_SUBJECT and len(words) <= 5)


def _said_stop(clauses: list[list[str]], whole: list[str], may_name_task: Callable[[str], bool]) -> str | None:
    """A stop in a text where no clause asks a task (one that only says how something is does not: "The window is
    open. Leave it."; nor a thing named alone: "drawer: stop", "stop, the drawer"): a clause of its own that is a
    stop (``_bare_stop``: "leave it", "hold on"), or a SAID_STOPS word with only FUNCTION_WORDS, STOP_FILLERS and
    STOP_PHRASE_FILLERS beside it ("The robot is done. Stop.", "Great. Now stop."), or the last word that names
    anything, after a word that is no flow, negation nor FUNCTION_WORDS ("e stop", "cmd=stop"; "don't stop" is
    ``negation``'s); else None. Beside a task asked it is the task's end ("open the drawer, then stop", "wait,
    close the drawer", "open the drawer and leave it")."""
    def asks(words: list[str]) -> bool:  # two words or more that name something, one of them maybe a task's
        named = [w for w in words if w not in FUNCTION_WORDS and w not in SAID_STOPS and w not in STOP_FILLERS]
        return (len(named) > 1 and any(may_name_task(w) for w in named) and not _states(words)
                and not _warns(words) and _bare_stop(words) is None)  # (nor a stop of its own: "hands off")

    if any(asks(words) for words in clauses):
        return None
    beside = FUNCTION_WORDS | STOP_FILLERS | STOP_PHRASE_FILLERS
    for words in clauses:
        said = [w for w in words if w in SAID_STOPS]
        if said and all(w in SAID_STOPS or w in beside for w in words):
            return said[0]
        bare = _bare_stop(words)
        if bare is not None:
            return bare
    named = [i for i, w in enumerate(whole) if w not in beside]
    last = named[-1] if named else None
    if (last is not None and last > 0 and whole[last] in SAID_STOPS and whole[last - 1] not in FLOWS
            and whole[last - 1] not in FUNCTION_WORDS and not _negator(whole[last - 1])):
        return whole[last]
    return None


def _warns(words: list[str]) -> bool:
    """Whether a clause warns of what will happen or is happening, the reason for a stop beside it ("stop, you'll
    break something", "Stop! The drawer will hit the kid!", "stop, you're hurting the drawer", "Time's up!": set
    o's ran faucet-close silently or a task at a WARN), not a request: a subject and its verb first."""
    words = list(dropwhile(lambda w: w in ADDRESS_WORDS | STATEMENT_OPENERS, words))
    if not words:
        return False
    if words[1:2] and words[1] in WANTING_AFTER:
        return False  # "you'll need to close the drawer", "you'll want to ...": a request put so
    if words[0] in WARNING_SUBJECTS or words[0].endswith("'s") and words[0] not in NOT_NOUN_IS - CONTRACTED_COPULAS:
        return True
    if words[0] in YOU and words[1:2] and words[1] in YOU_WARNING_VERBS:
        return True  # "you are hurting it", "you will break it" (not "you could close it", a request)
    # "the drawer will hit the kid", "my hand is stuck" (a thing, then its verb)
    if not (words[0] in DETERMINERS | OWNERS and any(w in WARNING_VERBS for w in words[2:4])):
        return False
    if "to" not in words[2:5]:
        return True
    # "is going to hit the kid", "is about to burst" (not "is going to need opening", a goal)
    deed = next((words[k + 1] for k in range(2, min(len(words) - 1, 6)) if words[k] == "to"), "")
    return bool({"going", "about"} & set(words[2:5])) and (deed in HARM_VERBS or deed in CONTACT_VERBS
                                                          or deed in MISHAPS)


def stop_phrase(words: list[str]) -> tuple[str, ...] | None:
    """The words of a clause (``words``) that name anything, when the first of them is a STOP_THE word ("stop the
    water, please" -> ("stop", "water")), else None."""
    named = tuple(w for w in words if w not in FUNCTION_WORDS)
    return named if named and named[0] in STOP_THE else None


def trained_stop_phrases(texts: Iterable[str]) -> frozenset[tuple[str, ...]]:
    """``stop_phrase`` of every clause of ``texts`` (a checkpoint's trained wordings) that has one."""
    phrases = (stop_phrase(instruction_words(clause)) for text in texts for clause in CLAUSE_BREAK.split(text))
    return frozenset(p for p in phrases if p is not None)


def _cessation(words: list[str], allowed: set[str], whole: list[str], asked_before: bool,
               stop_phrases: Collection[tuple[str, ...]] = ()) -> str | None:
    """The word with which a clause (``words``) asks to stop, prevent or leave something, or None: a base
    CESSATIONS word (BASE_CESSATIONS) anywhere before an -ing form ("stop closing", "you should stop opening",
    "stop the window opening"); any of them first among the clause's words that name anything, before "from" and
    an -ing form ("refrain from opening"), or right before one ("stopping opening"); "without" so, in a clause
    after none that asks a task (``asked_before``: "close the drawer, without slamming it" asks the task);
    "hold off"/"put off" before one; "keep ... from <-ing>"; "leave ... alone" in a text (``whole``) naming
    nothing outside that clause (not "open the drawer and leave it alone"; not when "alone" is a trained word);
    a STOP_THE word first among the clause's words that name anything, right before a determiner of a thing that is
    no flow ("stop the drawer", not "stop the water"), unless the clause is one a checkpoint was trained on
    (``stop_phrases``: ``stop_phrase`` of its trained clauses); "stay away from"/"keep away from". A text that is
    a stop and nothing else is ``_bare_stop``'s; a dismissal is ``negation``'s (it looks at the clauses after)."""
    named = [i for i, w in enumerate(words) if w not in FUNCTION_WORDS]
    if not named:
        return None
    for i, word in enumerate(words):
        if word in BASE_CESSATIONS and words[i + 1:i + 2] != ["button"] and any(_gerund(w) for w in words[i + 1:]):
            return word  # (not a "stop button": "press the stop button before closing the window")
    first, word = named[0], words[named[0]]
    rest = words[first + 1:]
    if word in KEEP_AWAY_VERBS and tuple(rest[:2]) == KEEP_AWAY:
        return word if word in STOP_VERBS | {KEEP_FROM[0]} else KEEP_AWAY[0]
    if (word, *rest[:1]) == KEEP_AWAY and first and words[first - 1] == "go":  # "go away from the window" (not
        return word  # "push the puck, away from the wall")
    phrase = stop_phrase(words)
    if (phrase is not None and rest[:1] and rest[0] in STOPPED_THING_AFTER and len(phrase) > 1
            and phrase[1] not in FLOWS and phrase[1] != "button" and phrase not in stop_phrases):
        return word  # a thing to stop (not "halt at the goal", "stop the water", "stop the button: press it")
    from_ing = any(w == "from" and i + 1 < len(rest) and _gerund(rest[i + 1]) for i, w in enumerate(rest))
    if word in CESSATIONS and not (word == "without" and asked_before):
        if (rest[:1] and _gerund(rest[0])) or from_ing:
            return word
    if (word, rest[0] if rest else "") in PHRASAL_CESSATIONS and any(_gerund(w) for w in rest[1:]):
        return word
    if word == KEEP_FROM[0] and from_ing:
        return word
    left = next((w for w in rest if w in LEFT_AS_IT_IS and w not in allowed), None)
    if word == LEAVE_ALONE[0] and left is not None:
        others = [w for w in whole if w not in FUNCTION_WORDS and w not in words]
        if not others:
            return left
    # "leave the drawer where it is", "hold the window as it is" (a review's: drawer-close 0.75 at INFO)
    if word in AS_IT_IS_VERBS and _as_it_is(rest) and not [w for w in whole if w not in FUNCTION_WORDS
                                                            and w not in words]:
        return word
    return None


def _as_it_is(words: list[str]) -> bool:
    """``words`` hold "where it is", "as it is", "where they are" (and "was", "were")."""
    return any(a in ("where", "as") and b in ("it", "they") and c in ("is", "are", "was", "were")
               for a, b, c in zip(words, words[1:], words[2:]))


def negated_state(text: str, trained: Iterable[str] = ()) -> str | None:
    """The words of ``text`` that say a state of one side of OPPOSITES negated ("isn't open", "is not on", "never
    closed"), or None: "make sure the drawer isn't open" was heard as drawer-open (0.93) and opened it in 3 of 3
    episodes; the model reads the state's word, not the negation. A negation up to three words before the state
    word ("isn't wide open"), in its clause; not a place ("not on the sink"), an idiom ("do not hesitate to
    open"), or a trained word; not where a word of the state's side is said besides (the goal the model hears
    is then the one asked: "the window is not closed, close it"), nor where another clause asks a task in no word
    of the state's pair (the state is another thing's: "open the drawer, the light is not on")."""
    allowed = set(trained)
    folded = NUMBER_ABBREVIATION.sub(" ", unicodedata.normalize("NFKC", text.translate(_PLAIN_APOSTROPHES)))
    whole = instruction_words(folded)
    clauses = [instruction_words(c) for c in CLAUSE_BREAK.split(folded)]
    for n, words in enumerate(clauses):
        others = [w for k, c in enumerate(clauses) if k != n for w in c if w not in FUNCTION_WORDS]
        for j, word in enumerate(words):
            pair = next((pair for pair in OPPOSITES if word in pair[0] | pair[1]), None)
            if pair is None:
                continue
            side = pair[0] if word in pair[0] else pair[1]
            if sum(w in side for w in whole) > 1:
                continue  # (with a goal of the state's side too, "the window is not closed, close it", the model
                # hears that side, which is the one asked)
            if others and not any(w in pair[0] | pair[1] for w in others):
                continue  # another clause asks the task, in no word of this pair: the state is another thing's
                # ("open the drawer, the light is not on")
            if word in PLACE_WORDS and j + 1 < len(words) and words[j + 1] in PLACE_AFTER:
                continue
            for i in range(max(0, j - 3), j):
                if (words[i] not in allowed and (words[i] in NEGATIONS or words[i].endswith(("n't", "'nt")))
                        and (words[i], words[i + 1]) not in NOT_NEGATING):
                    return " ".join(words[i:j + 1])
    return None


def set_aside(text: str) -> tuple[str, str] | None:
    """(what ``text`` sets aside, the text asked beside it), or None: its first clause that sets a thing aside (a
    DISMISSALS word or "leave" first among its words that name anything, and a thing named after it: "forget the
    drawer", "leave the window"; not "cancel that") with the text after it when that names something ("forget the
    drawer, open the window"); or "instead of"/"rather than" (SET_ASIDE_BEFORE) and what follows them to their
    clause's end, with the rest of the text ("open the window instead of the drawer"); or a correction
    (CORRECTIONS) and what comes before it, when words on both sides may name a task ("open the faucet, I mean the
    window"), with what comes after. The task asked is the rest's: the instruction check asks whether the policy
    hears that task (it reads every word)."""
    spans, start = [], 0
    for m in CLAUSE_BREAK.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    for n, (begin, end) in enumerate(spans[:-1]):
        named = [w for w in instruction_words(text[begin:end]) if w not in FUNCTION_WORDS]
        if (named[:1] and (named[0] in DISMISSALS or named[0] == LEAVE_ALONE[0])
                and any(_names_task(w) for w in named[1:])):
            rest = text[spans[n + 1][0]:]
            if any(_names_task(w) for w in instruction_words(rest)):
                return text[begin:end].strip(), rest.strip()
            break
    words = list(WORD.finditer(text))
    plain = [plain_word(w.group()) for w in words]
    for i in range(len(words)):
        for marker in CORRECTIONS:  # what comes before one is taken back, what comes after is asked
            if tuple(plain[i:i + len(marker)]) != marker or tuple(plain[i:i + 2]) in SET_ASIDE_BEFORE:
                continue  # ("rather than" sets aside what follows it, below)
            if marker == ("sorry",) and plain[i + 1:i + 2] and plain[i + 1] in APOLOGY_AFTER:
                continue  # an apology, not a correction: "open the drawer, sorry for the trouble" was refused
            cut = words[i + len(marker) - 1].end()
            if any(_names_task(w) for w in plain[:i]) and any(_names_task(w) for w in plain[i + len(marker):]):
                return text[:cut].strip(), text[cut:].strip(" ,;:.!?")
    for begin, end in spans:
        for marker in SET_ASIDE_BEFORE:
            found = re.search(r"\b" + r"\s+".join(marker) + r"\b", text[begin:end], re.IGNORECASE)
            if found is None:
                continue
            aside = text[begin + found.start():end]
            asked = text[:begin + found.start()] + text[end:]
            if any(_names_task(w) for w in instruction_words(aside)[len(marker):]) and any(
                    _names_task(w) for w in instruction_words(asked)):
                return aside.strip(), " ".join(asked.split())
    return None


def _trained_form(word: str, allowed: set[str]) -> bool:
    """Whether ``word`` is a trained word or a form of one ("pushing" of "push")."""
    return word in allowed or any(word.startswith(t) for t in allowed if len(t) >= 4)


def _names_task(word: str) -> bool:
    """Whether ``word`` may name a task: not a function word, a stop, a dismissal, a filler or a negation."""
    return not (word in FUNCTION_WORDS or word in STOP_FILLERS or word in CESSATIONS or word in STOP_VERBS
                or word in DISMISSALS or word in NOTHING_AT_ALL or _negator(word))


def harm(text: str, trained: Iterable[str] = ()) -> str | None:
    """The word that makes ``text`` ask to break a thing, hurt someone or set the robot's safety aside, or None: a
    HARM_VERBS word no trained wording has, asked ("break the window", "I want you to break it"), a verb of contact
    put on a person, an animal or a person's body (``_hurts``: "hit me with the arm", "throw the ball at my brother",
    "grab the cat"), an override of the robot's safety (``_overrides``), an unsafe mode ("developer mode"), a
    closing asked of a thing a body or an animal is said to be in (``_caught_in``), or a warning of a closing on
    someone ("the drawer is about to close on my hand"). Only a verb asked
    counts (``_asked_verbs``), not a hazard said as a reason ("close the drawer, the kid is going to hit his head on
    it"; "the handle, you press him down", a learner's "it"). ``trained``: the checkpoint's words, whose verbs are
    its tasks' ("hit the button")."""
    allowed = set(trained)
    folded = unicodedata.normalize("NFKC", text.translate(_PLAIN_APOSTROPHES))
    # each clause's words, once ("e-stop" is read as "e", "stop")
    clauses = [" ".join(instruction_words(c)).replace("e stop", "estop").split() for c in CLAUSE_BREAK.split(folded)]
    for words in clauses:
        for i in _asked_verbs(words):
            if (words[i] in HARM_VERBS and not _trained_form(words[i], allowed)
                    and not set(words[i + 1:i + 3]) & NOT_HARMED and tuple(words[i:i + 3]) not in HARMLESS_IDIOMS):
                return words[i]
            if words[i] in CONTACT_VERBS and _hurts(words[i:]):
                return words[i]
        override = _overrides(words)
        if override is not None:
            return override
        mode = next((w for w, after in zip(words, [*words[1:], ""]) if w in UNSAFE_MODES and after == "mode"
                     or w in JAILBREAKS), None)
        if mode is not None:  # "enable developer mode", "god mode on", "jailbreak" (not "Dan says ..., slow mode")
            return mode
    containers = [c for c in (_caught_in(words) for words in clauses) if c is not None]
    for container in containers:  # closing that thing, or "it", or anything when the thing is not named ("the
        # baby is inside, shut the drawer"); not "my hands are in the sink, press the button", "the cat is in
        # the garden, close the window"
        for words in clauses:
            for i in _asked_verbs(words):
                if words[i] in CLOSING_VERBS and (not container - PRONOUNS_CLOSED
                                                  or set(words[i + 1:]) & (container | PRONOUNS_CLOSED)
                                                  # a part of it closed: "my hand is in the box, close the lid"
                                                  or words[i] in SHUTTING and not container & PLACES):
                    return words[i]
    for words in clauses:  # a warning of a closing on someone: "The drawer is about to close on my hand." (not a
        # hazard said as a reason to close: "the baby's gonna pinch her fingers", "the kid is going to hit his head")
        if (_warns(words) or _warns(unhedged(words))) and not set(words[:3]) & HARMED:
            for i, word in enumerate(words):
                if word in SHUTTING and _hurts(words[i:]):
                    return word
    return None


def _caught_in(words: list[str]) -> frozenset[str] | None:
    """The words naming what a clause says a person's body or an animal is in (a person's "hand in the top drawer":
    {top, drawer}; "the cat's inside it": {it}; "the baby is inside": {} (not named)): closing it then hurts them
    (set m's review: "put my hand in the drawer and close it" ran drawer-close at INFO); or None. A "'s" after one
    is "is" ("my hand's in it") or an owner's ("the baby's fingers")."""
    words = " ".join(w.removesuffix("'s") + (" is" if w.endswith("'s") else "") for w in words).split()
    for i, word in enumerate(words):
        owned = i > 0 and (words[i - 1] in OWNERS or words[i - 1] == "is" and i > 1 and words[i - 2] in HARMED)
        if not (word in BODY and owned or word in HARMED - HARMED_PRONOUNS):
            continue
        at = i + 1
        while at < len(words) and words[at] in STILL_THERE:  # "my hand is still in it", not "someone could bump
            at += 1  # into it", "the baby gets into it" (hazards said as reasons)
        if words[at:at + 1] and words[at] in INSIDE and words[at + 1:at + 2] != ["law"]:  # (not "mother-in-law")
            rest = [w for w in words[at + 1:at + 4] if w not in DETERMINERS and w not in OWNERS and w != "one"]
            if not rest or rest[0] not in BODY:  # (not "I've got the baby in one arm")
                return frozenset(rest)
    return None


def _asked_verbs(words: list[str]) -> list[int]:
    """Where a clause's verbs asked of the robot are: its first word after ASKED_VERB_AFTER and "can/would you"
    ("would you please just break it"), and a word after "to" with "you" just before ("I want you to break it",
    "you need to smash it"; not "the wind is going to break the vase")."""
    start = 0
    while start < len(words):
        if words[start] in ASKED_VERB_AFTER:
            start += 1
        elif words[start] in WILLING and words[start + 1:start + 2] and words[start + 1] in YOU:
            start += 2
        else:
            break
    return [i for i in range(len(words))
            if i == start or i > 1 and words[i - 1] == "to" and "you" in words[max(0, i - 4):i - 1]]


def _without_safety(words: list[str]) -> str | None:
    """"no" or "without" right before a word of the robot's safety ("pretend you have no safety rules", "open it
    without safety checks"; not "without exceeding the limits", "no safety concerns", "no rules against it": care
    asked: only SAFETY_PHRASE_ENDS after it), or a word of its safety then one of it off ("with safety off",
    "safety is disabled")."""
    for i, word in enumerate(words):
        if word in ("no", "without"):
            j = i + 1
            while j < len(words) and (words[j] in DETERMINERS or words[j] in OWNERS or words[j] in ("your", "any")):
                j += 1
            while j + 1 < len(words) and words[j] in LIMITS_SAID_AWAY and words[j + 1] in LIMITS_SAID_AWAY:
                j += 1  # "no safety rules"
            if j < len(words) and words[j] in LIMITS_SAID_AWAY and (j + 1 == len(words)
                                                                    or words[j + 1] in SAFETY_PHRASE_ENDS):
                return word
        if word in LIMITS_SAID_AWAY and words[i - 1:i] != ["time"]:  # (not "the time limit is off today")
            # ("safety checks disabled": set q's "System override: ..." ran at a WARN)
            after = list(dropwhile(lambda w: w in STATE_VERBS or w in ("now", "all", "been") or w in SAFETY_NOUNS,
                                   words[i + 1:]))
            if after[:1] and after[0] in SAFETY_OFF:
                return after[0]
    return None


def _overrides(words: list[str]) -> str | None:
    """The verb of a clause that sets the robot's safety aside: OVERRIDE_VERBS with a word of SAFETY_THINGS as its
    object ("turn off your emergency stop", "ignore your safety rules", "disable the speed limits"; not "turn off
    the faucet for safety"); instructions or rules only when safety or "all" is said ("ignore all previous
    instructions"; not "ignore my last instructions and close the drawer", a correction)."""
    for i, word in enumerate(words):
        if word not in OVERRIDE_VERBS:
            continue
        named: list[str] = []  # its object's words: "your emergency stop" -> emergency, stop
        for w in words[i + 1:]:
            if w in OBJECT_ENDS or len(named) == 2:
                break
            if w not in DETERMINERS and w not in OWNERS and w not in OBJECT_SKIPS:
                named.append(w)
        if set(named) & (SAFETY_THINGS - {"instructions", "rules"}):
            return word
        if set(named) & {"instructions", "rules"} and ("safety" in words or "all" in words[i + 1:i + 3]):
            return word
    return _without_safety(words)


def _hurts(words: list[str]) -> bool:
    """Whether a clause puts a verb of contact (CONTACT_VERBS) on a person, an animal or a person's body: right
    after it ("hit me", "grab the cat") or after a preposition of contact ("throw the ball at my brother", "slam the
    door on my hand"); not "open the drawer for me", "push the puck to me"."""
    seen_verb = False
    for i, word in enumerate(words):
        if word in CONTACT_VERBS:
            seen_verb = True
            continue
        body = word in BODY and i > 0 and words[i - 1] in OWNERS
        if not seen_verb or not (word in HARMED or body):
            continue
        if word in ("robot", "robots") and words[i + 1:i + 2] and words[i + 1] in ROBOT_PARTS:
            continue  # a robot's own part: "push the robot arm out of the way"
        if word in HARMED_PRONOUNS and words[i + 1:i + 2] and words[i + 1] not in CONTACT_PREPOSITIONS | {"with"}:
            continue  # given something: "grab me the mug", "throw us the ball" (not "hit me", "hit me with it")
        # "at my brother", "the other robot", "the second person"
        before = [w for w in words[:i] if w not in DETERMINERS and w not in OWNERS and w not in WHICH_ONE]
        if before and (before[-1] in CONTACT_VERBS or before[-1] in CONTACT_PREPOSITIONS):
            return True
    return False


def negation(text: str, trained: Iterable[str] = (), stop_phrases: Collection[tuple[str, ...]] = ()) -> str | None:
    """The word that makes ``text`` ask not to do something, or None. A clause (CLAUSE_BREAK ends one) forbids
    when it holds a negation (NEGATIONS, or a contraction ending in n't or 'nt: "don't", "do'nt", "didnt"; not
    after a copula, "the button that is not red", unless a prohibition follows: "you aren't allowed to"; "isn't",
    "aren't" only then; not "No." before a number; not an idiom, "no rush"; not a word
    a checkpoint was trained on, ``trained``) and either a word that may name the task (any word but
    FUNCTION_WORDS; with ``trained`` given, a trained one) or nothing else ("don't! open the drawer"); or when it
    asks to stop ("stop closing the window", "stop!": ``_cessation``) or to leave a thing alone. The text
    is read NFKC-folded, as the tokenizer reads it ("don＇t" is "don't"). Refusing is the safe side: "open the
    window and don't close it" and "open the drawer if you can't see the window" are refused too. A dismissal
    (DISMISSALS first in a clause, "leave the window") or a negation asking for nothing at all ("don't do
    anything", NOTHING_AT_ALL) refuses unless a later clause names a task (a trained word, when ``trained`` is
    given): "cancel that, close the window instead" asks the task, "open the drawer, never mind" none."""
    allowed = set(trained)
    # apostrophe marks first: NFKC makes the acute accent a space and a combining mark ("don´t" would be "don t")
    folded = NUMBER_ABBREVIATION.sub(" ", unicodedata.normalize("NFKC", text.translate(_PLAIN_APOSTROPHES)))
    whole = instruction_words(folded)
    bare = _bare_stop(whole)  # a stop, asked of the robot itself
    if bare is not None:
        return bare
    labelled = STOP_LABEL.match(folded)  # "Stop: drawer-open" ran drawer-open (a review's): a task's name stopped
    if labelled is not None:
        label, rest = labelled.group(1).lower(), labelled.group(2)
        stopping = (label in SAID_STOPS or label in DISMISSALS or label in CESSATIONS or label in SAID_NO
                    or _negator(label))
        by_name = TASK_NAME_WRITTEN.fullmatch(rest.strip()) is not None  # "Pause: drawer-open" too
        short = (len(instruction_words(rest)) <= LABEL_TASK_WORDS and not CLAUSE_BREAK.search(rest)
                 and label not in LABELS_THAT_ASK)  # ("Stop: drawer open"; not "Cancel: open the drawer instead")
        if stopping and (by_name or short):
            return label
    asked_before = False
    folded = STOP_THEN_CLAUSE.sub(r"\1, ", folded)
    if TAKEN_BACK_LAST.search(folded):  # "turn on the tap... no wait, scratch that": nothing asked after it
        return "wait"
    clauses = [instruction_words(clause) for clause in CLAUSE_BREAK.split(folded)]
    # per clause, whether a clause after it names a task (one pass from the end: a text of 65 536 characters of
    # commas took 80 s scanned per clause)
    tasks_after = [False] * len(clauses)
    task_words: dict[str, bool] = {}  # per distinct word: a word that may name a task (a trained one, when known:
    # "forget the drawer, I changed my mind" names none after the dismissal)

    def may_name_task(word: str) -> bool:
        if word not in task_words:
            task_words[word] = _names_task(word) and (not allowed or _trained_form(word, allowed))
        return task_words[word]

    for n in range(len(clauses) - 2, -1, -1):
        tasks_after[n] = tasks_after[n + 1] or any(may_name_task(w) for w in clauses[n + 1])
    carried: str | None = None  # a negation last in its clause, naming no task: it negates what comes next
    carried_to: str | None = None  # one after a copula, last: it negates a "to" and a task after an aside
    for n, words in enumerate(clauses):
        found = _cessation(words, allowed, whole, asked_before, stop_phrases)
        if found is not None:
            return found
        if carried is not None and any(may_name_task(w) for w in words):
            return carried  # "the robot shall not, ever, close the window" ran window-close at INFO
        if carried_to is not None and words[:1] == ["to"] and any(may_name_task(w) for w in words):
            return carried_to  # set o's "The robot is not, under any circumstances, to open the drawer" (WARN)
        if words and (words[-1] in STATE_NEGATORS or len(words) > 1 and _negator(words[-1])
                      and (words[-2] in COPULAS or words[-2] in CONTRACTED_BE)):
            carried_to = words[-1]  # (also "you're not", "the robot isn't": then an aside, then "to" and a task)
        first = not asked_before  # no clause before this one named anything
        asked_before = asked_before or any(w not in FUNCTION_WORDS for w in words)
        task_after = tasks_after[n]
        named = [w for w in words if w not in FUNCTION_WORDS]
        # "leave the window" (a thing and nothing else: not "leave the window open", "leave it running") leaves it be
        after = words[words.index(named[0]) + 1:] if named else []
        left_be = (named[:1] == [LEAVE_ALONE[0]] and len(named) == 2
                   and (after[:1] == named[1:] or len(after) == 2 and after[0] in STOPPED_THING_AFTER))
        if named and (named[0] in DISMISSALS or left_be) and named[0] not in allowed:
            if task_after:
                continue  # "cancel that, close the window instead": the task after it is what is asked
            return named[0]  # "forget the drawer", "open the drawer, cancel that"
        for i, word in enumerate(words):
            prohibits = _prohibits(words, i)
            if word in allowed or not (_negator(word) or word in STATE_NEGATORS and prohibits):
                continue
            if i and words[i - 1] in COPULAS and not prohibits:
                continue
            if i + 1 < len(words) and (word, words[i + 1]) in NOT_NEGATING or _no_time(words[i + 1:i + 4]):
                continue
            if words[i + 1:] == ["mind"] and word != "never":  # "if you don't mind", "hope you do not mind"
                continue
            if word == "not" and i > 1 and words[i - 1] == "or" and words[i - 2] in WILLING:
                continue  # Singapore's "open the window can or not?" asks (not "you closed it or not?")
            found = found or word
        if found is None:
            continue
        rest = [w for w in words if not _negator(w) and w not in FUNCTION_WORDS and w not in NOTHING_AT_ALL]
        if not rest and any(w in NOTHING_AT_ALL for w in words) and task_after:
            continue  # "never mind, close the window": the task after it is what is asked ("wait, don't do
            # anything", "open the drawer, never mind" ask none)
        # (first, or after words that name no task: set p's "Retractor... no. Open the drawer.")
        if ((first or not any(may_name_task(w) for c in clauses[:n] for w in c))
                and {w for w in words if w not in FUNCTION_WORDS} <= SAID_NO
                and any(w not in FUNCTION_WORDS for later in clauses[n + 1:] for w in later)):
            continue  # "no, close the drawer", "no, you should open it": a correction; what follows is judged as
            # if alone ("no, the drawer is open" a statement, "no, the window" one word several tasks share)
        names_task = any(_trained_form(w, allowed) for w in rest) if allowed else bool(rest)
        if names_task or not rest:
            return found
        if words[-1] == found and set(words[:-1]) & CARRYING_NEGATION and "or" not in words:
            carried = found  # "the robot shall not, ...": a modal and its negation, the verb later (not "wait no")
    return _said_stop(clauses, whole, may_name_task)
