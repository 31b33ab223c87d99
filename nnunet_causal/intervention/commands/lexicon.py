"""The grammar's word lists: action cues, strength words, locations, refusal patterns (all editable here).

Every pattern is a regular expression over text normalised by :func:`prepare_clause` (lower case, words
separated by one space, contractions expanded: "that's" -> "that is", "don't" -> "do not"). Cues are tried
longest first and each claims its words, so "include more of" (expand) wins over "include" (add) and
"did not segment" (add) over the negated "segment". A cue's ``kind`` says where its object sits: ``pre``
(a verb before the structure: "shrink the liver"), ``post`` (a complaint after it: "the liver is too big").
"""
from __future__ import annotations

import re
from typing import List, Tuple

_CONTRACTIONS = [(r"\bcan't\b", "can not"), (r"\bwon't\b", "will not"), (r"\bshan't\b", "shall not"),
                 (r"n't\b", " not"), (r"\b(that|it|there|what|here|this|he|she|where|who|how|which)'s\b", r"\1 is"),
                 (r"'re\b", " are"), (r"'ve\b", " have"), (r"'ll\b", " will"), (r"'m\b", " am"), (r"'d\b", " would"),
                 (r"'s\b", ""), (r"\bdont\b", "do not"), (r"\bdoesnt\b", "does not"), (r"\bisnt\b", "is not"),
                 (r"\bthats\b", "that is"),
                 (r"\bits\b(?= (?:just|only|not|a|an|the|too|way|far|much|missing)\b)", "it is")]


def prepare_clause(text: str) -> str:
    """Lower case, contractions expanded, hyphens/underscores/punctuation to spaces (commas kept as a word
    of their own, for clause splitting), spaces collapsed."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    for pat, rep in _CONTRACTIONS:
        t = re.sub(pat, rep, t)
    t = re.sub(r"[_/\-]", " ", t)
    t = re.sub(r"\b(?:the )?patient(?:'s|s)? (left|right)\b", r"\1", t)  # "on the patient's left" = left
    t = re.sub(r"[^\w\s.,]|(?<!\d)\.|\.(?!\d)", " ", t)
    t = re.sub(r"(?<!\d),|,(?!\d)", " , ", t)
    return " ".join(t.split())


_BIG = (r"(?:big|large|wide|thick|fat|loose|generous|broad|bloated|extensive|greedy|liberal|aggressive|inclusive|"
       r"much|far|baggy|puffy|swollen)")
_SMALL = r"(?:small|tight|thin|narrow|conservative|little|short|timid|shy|restrictive|skinny|tiny|stingy|cautious)"
_SEGMENT = (r"(?:segment(?:ed)?|label(?:l?ed)?|mark(?:ed)?|detect(?:ed)?|found|find|pick(?:ed)? up|include[ds]?|"
           r"annotate[ds]?|outline[ds]?|catch|caught|captured?|get|got|see|saw|seen|show(?:n|ed)?|identif(?:y|"
           r"ied))")

#: (pattern, action, kind) -- kind "pre": object follows; "post": object precedes; "any": either; "is_not":
#: remove if a structure follows right after; "confounder" / "confounder_is": an ignore-type verb / "is just
#: (glare)"; "override": wins over longer cues of the clause ("there is an extra island of spleen")
CUES: List[Tuple[str, str, str]] = [
    # --- ignore_confounder (verbs that take an artefact / acquisition as object)
    (r"(?:do not|never) (?:be |get )?(?:fooled|misled|distracted|confused|tricked|thrown off|influenced) by",
     "ignore_confounder", "confounder"),
    (r"(?:not|never) (?:be |get )?(?:fooled|misled|distracted|confused|tricked|thrown off) by",
     "ignore_confounder", "confounder"),
    (r"pay no attention to|look past|look through|see through|factor out|account for|correct for|compensate for|"
     r"adjust for|control for|discount|disregard|ignore|ignoring|regardless of|robust to|despite|unaffected by|"
     r"remove the (?:effect|influence|impact) of|undo the effect of", "ignore_confounder", "confounder"),
    (r"(?:is|are|was|were) (?:just|only|merely|simply|purely)(?: an?| the| some)?",
     "ignore_confounder", "confounder_is"),
    (r"(?:do not|never|please do not) let", "ignore_confounder", "confounder"),
    # --- remove, before everything: a spurious component, "there is no X", "do not segment X"
    (r"(?:extra|spurious|stray|unwanted|superfluous|isolated|disconnected|floating|wrong)(?: small| tiny|"
     r" little)? (?:island|islands|blob|blobs|component|components|spot|spots|fragment|fragments|piece|pieces|"
     r"bit|bits|patch|patches|region|regions|speck|specks)", "remove", "override"),
    (r"there (?:is|are) no|(?:do not|never|stop|quit|please do not) (?:segment|segmenting|label|labelling|"
     r"labeling|include|including|mark|marking|show|showing|detect|detecting|want)|no(?= (?:\S+ ){1,3}(?:please|"
     r"here|there|at all)(?!\S))", "remove", "override"),
    # --- expand
    (r"(?:ends|stops|finishes|ending|stopping|stopped|ended|cut|cuts) (?:too early|too soon|short|prematurely|"
     r"early)|(?:falls|fall|comes|come|stops) short|not (?:fully|completely|entirely|totally) (?:covered|"
     r"segmented|included|captured|outlined|filled|labell?ed|detected)", "expand", "post"),
    (r"(?:does|do|did|is|are) not (?:cover|covering|include|including|reach|reaching|capture|capturing|contain|"
     r"containing|get|getting|fill|filling) (?:all|the whole|enough|everything|the entire|the full|the rest)|"
     r"not (?:cover|covering|include|including|capture|capturing|fill|filling) (?:\w+ ){0,3}(?:fully|completely|"
     r"entirely|properly)", "expand", "post"),
    (r"(?:misses|missed|missing|lacks|cuts? off|left out|leaves out|excludes|skipped|skips) (?:part|parts|a part|"
     r"some|a bit|a piece|a portion|the edge|the edges|the tip|the rim|the border|the margin|the periphery|"
     r"the lower|the upper|the rest)", "expand", "post"),
    (r"(?:not|is not|are not) (?:big|large|wide|thick|generous|complete|full|inclusive) enough|not enough|"
     r"too little|(?:needs|need) more", "expand", "any"),
    (r"(?:not|is not|are not) (?:small|tight|thin|narrow|conservative|precise) enough|(?:needs|need) less",
     "shrink", "any"),
    (r"(?:not|does not|do not|did not) (?:go|reach|extend|come|get|spread) (?:far|deep|wide|high|low|out) enough|"
     r"not far enough", "expand", "post"),
    # comparisons with the structure itself: "the mask is bigger than the polyp"
    (r"(?:bigger|larger|wider|thicker|more) than(?: the| it| its)?(?: actual| real| true)?", "shrink", "post"),
    (r"(?:smaller|thinner|narrower|tighter|less) than(?: the| it| its)?(?: actual| real| true)?", "expand", "post"),
    # phrasal verbs around their object: "cut the bladder down", "blow the liver up" (only the verb is claimed)
    (r"(?:cut|scale|pull|pare|trim|bring|dial|slim|thin|tone|rein|shave|take|draw)(?= (?:\S+ ){0,4}(?:down|back|"
     r"in|inward|inwards)(?!\S))", "shrink", "pre"),
    (r"(?:blow|bump|scale|puff|fill|open|fatten|beef|bulk|pad|push|size|build|round)(?= (?:\S+ ){0,4}(?:up|out|"
     r"outward|outwards)(?!\S))", "expand", "pre"),
    (rf"(?:too|overly|excessively) {_SMALL}", "expand", "post"),
    (r"under ?(?:segmented|segmenting|segmentation|estimated|estimating|sized|called|contoured|drawn|covered)|"
     r"undersized|incomplete|partial|cut off|clipped|truncated too early", "expand", "post"),
    (r"(?:include|includes|segment|capture|cover|take|grab|add|get|label|mark|show) more(?: of)?", "expand", "pre"),
    (r"(?:include|includes|segment|capture|cover|covers|take|grab|add|get|label|mark|"
     r"show)(?= (?:\S+ ){0,3}more(?!\S))", "expand", "pre"),
    (r"more (?:generous|inclusive|liberal|aggressive|of)|less (?:conservative|tight|strict|cautious|restrictive)|"
     r"bigger|larger|wider|thicker|fuller|broader|roomier|fatter|greater", "expand", "any"),
    (r"enlarge[ds]?|enlarging|expand(?:s|ed|ing)?|grow(?:s|n|ing)?|grew|dilate[ds]?|dilating|extend(?:s|ed|ing)?|"
     r"widen(?:s|ed|ing)?|increase[ds]?|increasing|broaden(?:s|ed|ing)?|thicken(?:s|ed|ing)?|inflate[ds]?|"
     r"fatten(?:s|ed)?|stretch(?:es|ed)?|pad(?:ded)? out|swell|bulk(?:ed)? up|open(?:ed)? up|loosen(?:s|ed)?|"
     r"relax(?:es|ed)?|move (?:the )?(?:boundary|border|edge|edges|contour|margin) out(?:ward|wards)?|"
     r"push (?:the )?(?:boundary|boundaries|border|borders|edge|edges|contour|margin|margins)? ?out(?:ward|"
     r"wards)?|fill (?:in|out)|upsize|bump up|make room", "expand", "pre"),
    # --- shrink
    (r"lose (?:some |a bit of |a little |a lot of |much )?(?:volume|size|area|weight|pixels|voxels|bulk)|"
     r"includes?(?= (?:part|some|bits?|a piece|a portion|parts) of(?!\S))|included(?= (?:part|some|bits?|a piece|"
     r"a portion|parts) of(?!\S))", "shrink", "post"),
    (rf"(?:too|overly|excessively) {_BIG}", "shrink", "post"),
    (r"over ?(?:segmented|segmenting|segmentation|estimated|estimating|sized|called|contoured|drawn|shoot|shoots|"
     r"shooting|reaches|reaching|extends|extending|inclusive|grown)|oversized|bloated", "shrink", "post"),
    (r"(?:spill|spills|spilling|spilled|leak|leaks|leaking|leaked|bleed|bleeds|bleeding|extend|extends|extending|"
     r"go|goes|going|spread|spreads|spreading|creep|creeps|creeping|reach|reaches|bulge|bulges|run|runs|"
     r"encroach(?:es|ing)?|invad(?:e|es|ing)|overlap(?:s|ping)?|protrude[ds]?) (?:over|out|too far|into|onto|"
     r"past|beyond|across|outside|in to|far into)|encroach(?:es|ing)? on|overlap(?:s|ping)? (?:with )?",
     "shrink", "post"),
    (r"(?:include|includes|segment|capture|cover|take|grab|label|mark|show|covers|takes|grabs|includes) (?:less|"
     r"too much)(?: of)?", "shrink", "pre"),
    (r"(?:include|includes|segment|capture|cover|covers|take|takes|grab|grabs|label|mark|"
     r"show)(?= (?:\S+ ){0,3}(?:less|too much)(?!\S))", "shrink", "pre"),
    (r"less (?:generous|inclusive|liberal|aggressive|of)|more (?:conservative|tight|strict|cautious|restrictive|"
     r"precise|accurate around)|smaller|thinner|tighter|narrower|slimmer|leaner|skinnier|less bulky", "shrink", "any"),
    (r"shrink(?:s|ing)?|shrunk|tighten(?:s|ed|ing)?|trim(?:s|med|ming)?|reduce[ds]?|reducing|erode[ds]?|eroding|"
     r"contract(?:s|ed|ing)?|narrow(?:s|ed|ing)?(?: down)?|thin(?:s|ned|ning)? (?:out|down)|pull(?:s|ed|"
     r"ing)? (?:in|back|inward|inwards)|cut(?:s|ting)? (?:back|down)|pare[ds]?(?: back| down)?|"
     r"shave[ds]?(?: off)?|crop(?:s|ped|ping)?|condense[ds]?|deflate[ds]?|slim(?:s|med|ming)?(?: down)?|"
     r"rein(?:ed)? in|dial(?:led|ed)? back|scale[ds]? (?:back|down)|retract(?:s|ed)?|downsize[ds]?|decrease[ds]?|"
     r"decreasing|make (?:it |them )?less|pulled (?:in|back)|brought in|bring in|move (?:the )?(?:boundary|"
     r"border|edge|edges|contour|margin) in(?:ward|wards)?", "shrink", "pre"),
    # --- add
    (rf"(?:did|does|has|have|was|were|is|are) not (?:been )?{_SEGMENT}|(?:failed|fails|forgot|"
     rf"forgotten) to {_SEGMENT}|(?:never|not) {_SEGMENT}", "add", "any"),
    (r"(?:you |it |the model |the network )?(?:have |has )?(?:missed|misses|forgot|forgotten|overlooked|skipped|"
     r"left out|omitted|dropped)|missing|absent|not there|not visible|nowhere to be (?:seen|found)|is gone|"
     r"went missing|disappeared|lost", "add", "any"),
    (rf"(?:also|additionally|too|as well) {_SEGMENT}", "add", "pre"),
    (r"there (?:is|are|should be|must be|ought to be)(?: also| definitely| clearly)?(?: an?| another| some| the)?",
     "add", "pre"),
    (r"add(?:s|ed)?(?: back)?|put (?:back|in)|bring back|restore|recover|segment|label|mark|annotate|outline|"
     r"delineate|contour|detect|find|show|highlight|draw|trace|pick up|capture|include|catch", "add", "pre"),
    # --- remove
    (r"get rid of|take (?:out|away|off)|cut out|throw away|throw out|do away with|wipe (?:out|away)?|"
     r"clear (?:out|away)?|strip (?:out|away)?", "remove", "pre"),
    (r"(?:should|must|ought to) not (?:be )?(?:there|here|segmented|labell?ed|marked|included|"
     r"part of (?:the )?mask|present)|(?:does|do) not belong|not supposed to be (?:there|here)|"
     r"no business being there|out of (?:there|here|the mask|the segmentation|the label)|gone|go away|disappear",
     "remove", "post"),
    (r"(?:is|are|was|were|should be) (?:wrongly|incorrectly|falsely|erroneously|mistakenly) (?:segmented|"
     r"labell?ed|marked|included|detected|called)|mislabell?ed|misclassified|false positives?|false detection|"
     r"spurious|phantom|hallucinated|should be (?:removed|deleted|erased|gone|excluded|cleared|dropped)|"
     r"not part of", "remove", "any"),
    (r"(?:is|are|was|were) (?:not|no longer|never)(?: really| actually| even| truly)?(?: an?| the|"
     r" part of(?: the)?)?", "remove", "is_not"),
    (r"less|fewer", "shrink", "pre"),
    (r"more", "expand", "pre"),
    (r"delete[ds]?|deleting|remove[ds]?|removing|erase[ds]?|erasing|eliminate[ds]?|discard(?:s|ed)?|drop|scrap|"
     r"exclude[ds]?|unlabel|unmark|deselect|kill|nuke|zap|lose|ditch|purge|get out|suppress|cancel|clean up|"
     r"clean out|wipe", "remove", "pre"),
]

#: strength words, tried in this order (slight beats strong: "very slightly" is slight)
STRENGTH_WORDS: List[Tuple[str, str]] = [
    ("slight", r"not (?:much|a lot|by much|too much)|a (?:little|tiny|wee|small) bit|a little|a bit|a tad|"
               r"a touch|a smidge(?:n)?|a hair|just a|slightly|slight|somewhat|marginally|barely|minor(?:ly)?|"
               r"gently|lightly|mildly|subtly|fractionally|minimal(?:ly)?|a few (?:pixels|voxels|mm|millimetres|"
               r"millimeters)|one (?:pixel|voxel)|(?:by )?(?:1|one|2|two) (?:mm|pixels?|voxels?|millimet(?:re|"
               r"er)s?)|very little|small amount|only a little"),
    ("strong", r"a lot|lots|a great deal|a good deal|a ton|tons|big time|by far|way|far|much|significantly|"
               r"substantially|considerably|greatly|heavily|massively|drastically|dramatically|hugely|enormously|"
               r"really|very|extremely|seriously|aggressively|strongly|majorly|grossly|severely|badly|completely|"
               r"totally|entirely|overly|excessively|loads|plenty|a whole lot|quite a lot|so much|aggressive|"
               r"hugely|heaps"),
    ("moderate", r"moderately|moderate|a fair (?:bit|amount)|reasonably|some|somewhat more|medium|"
                 r"a bit more than slightly|noticeably"),
]

#: positional words -> canonical location word (output in this order)
LOCATION_WORDS = {
    "upper": "upper", "superior": "upper", "top": "upper", "cranial": "upper", "cephalad": "upper", "higher": "upper",
    "dome": "upper", "lower": "lower", "inferior": "lower", "bottom": "lower", "caudal": "lower", "underside": "lower",
    "anterior": "anterior", "front": "anterior", "ventral": "anterior",
    "posterior": "posterior", "rear": "posterior", "dorsal": "posterior",
    "left": "left", "right": "right",
    "medial": "medial", "inner": "medial", "lateral": "lateral", "outer": "lateral",
    "central": "central", "centre": "central", "center": "central", "middle": "central", "core": "central",
    "edge": "boundary", "edges": "boundary", "border": "boundary", "borders": "boundary", "boundary": "boundary",
    "boundaries": "boundary", "margin": "boundary", "margins": "boundary", "rim": "boundary", "periphery": "boundary",
    "perimeter": "boundary", "contour": "boundary", "outline": "boundary", "outlines": "boundary",
    "contours": "boundary", "surface": "boundary",
    "tip": "tip", "apex": "tip", "pole": "pole", "head": "head", "tail": "tail",
}
LOCATION_ORDER = ("upper", "lower", "anterior", "posterior", "left", "right", "medial", "lateral", "central",
                  "head", "tail", "pole", "tip", "boundary")
#: a structure after one of these is where the edit happens, not what is edited
PROXIMITY = (r"overlaps?|overlapping|overlap with|touch(?:es|ed)?|abut(?:s|ting)?|meets|borders|invades|invading|"
            r"encroaches on|encroaching on|near|nearby|next to|close to|closest to|adjacent to|beside|besides|"
            r"bordering|touching|towards|toward|alongside|against|around|by|neighbou?ring|abutting|"
            r"at the border (?:of|with)|at the interface (?:with|of)|between|into|onto|in to|over|above|below|"
            r"under|beneath|underneath|behind|in front of|on top of|superior to|inferior to|lateral to|medial to|"
            r"from|inside|within|in|at|on")
WEAK_PROXIMITY = {"into", "onto", "in to", "over", "from", "inside", "within", "in", "at", "on"}

#: verbs that are also nouns ("the liver label"): not a cue after an article or a structure
NOUN_VERBS = {"label", "mark", "segment", "contour", "outline", "highlight", "trace", "draw", "show", "find", "drop",
              "capture", "catch", "mask", "clip", "crop", "record", "detect"}
PRONOUNS = {"it", "them", "this", "that", "these", "those", "one", "ones", "thing", "things", "its", "their",
            "itself", "themselves"}
#: words that may stand around a structure without naming one (not reported as unknown structures)
GENERIC_WORDS = set("""
a an the this that these those it its them their there here please kindly now again just also too as well
segmentation segmentations mask masks label labels labelling labeling prediction predictions result results
contour outline region regions area areas part parts portion portions piece pieces bit bits blob blobs island
islands spot spots speck specks fragment fragments component components chunk chunks patch patches lump
structure structures organ organs tissue thing things one ones stuff volume shape boundary edge edges some
you your model network should could would can will must may might be is are was were been being do does did
i we me my our us want need like make made making let lets get gets got keep and or but so then to for with
of on in at by from into onto up down out off over under about side sided half lobe slightly bit little lot
very much more less way far really quite rather only even still yet already current currently predicted
segmented labelled labeled marked shown image scan frame slice picture view case patient here's thanks thank
small big large tiny huge whole entire full all any every each other another same little bit okay ok
go goes going try trying attempt currently around a lot lots area zone
""".split())

INJECTION_PATTERNS = [
    r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.]{0,40}\b(?:instructions?|prompts?|rules|guidelines|"
    r"directives|programming|system message|constraints|guardrails|safety)\b",
    r"\bsystem prompt\b|\byou are now\b|\bact as (?:an?|the)\b|\bpretend (?:to be|you)\b|\bjailbreak\b|"
    r"\bdeveloper mode\b|\bdan mode\b|\bnew (?:instructions|rules|task|role|persona)\b|\bfrom now on\b|"
    r"^\s*(?:system|assistant|developer|admin|root)\s*:|\b(?:ignore|disregard|forget)\b (?:everything|all|anything)"
    r"(?: you (?:were|have been) told| (?:above|before|previous|prior|said|else|earlier))\b|\b(?:remove|disable|turn "
    r"off|bypass|switch off)\b[^.]{0,20}\b(?:safety|guardrails|restrictions|filters|validation|security)\b",
    r"\b(?:delete|remove|erase|wipe|format|overwrite|destroy|rm)\b[^.]{0,25}\b(?:files?|folders?|director(?:y|"
    r"ies)|disks?|drives?|database|databases|operating system|file system|server|repository|repo|home directory|"
    r"hard drive|everything on)\b",
    r"\brm\s+-\w+|\bsudo\b|\$\(|`|\bos\.system\b|\bsubprocess\b|\bimport os\b|\beval\s*\(|\bexec\s*\(|\bbash\b|"
    r"\bshell (?:command|script|access|prompt)|\b(?:run|open|spawn|in) (?:a |the )?shell\b|\bpowershell\b|"
    r"\bcmd\.exe\b|\bcurl\b|\bwget\b|<\s*script|\bdrop\s+table\b|\.\./|(?:^|\s)/(?:etc|"
    r"usr|home|root|bin|tmp|var|dev|proc)\b|[a-z]:\\\\",
    r"\b(?:passwords?|api[ _]?keys?|credentials?|secrets?|access tokens?|ssh keys?)\b",
    r"\b(?:send|upload|email|e-mail|post|exfiltrate|transmit|leak)\b[^.]{0,30}\b(?:to|data|images?|files?|"
    r"results?)\b[^.]{0,30}(?:https?://|@|server|internet|address)|https?://",
    r"\b(?:print|reveal|show|tell me|output|repeat)\b[^.]{0,20}\b(?:your|the)\b[^.]{0,10}\b(?:instructions|"
    r"prompt|rules|configuration|source code)\b",
    r"\b(?:run|execute|launch|install|download)\b[^.]{0,40}\b(?:code|script|program|command|commands|payload|"
    r"malware|package|binary)\b",
]
QUESTION_START = (r"^(?:what|why|how|which|where|when|who|whose|whom|is|are|was|were|should|shall|am|may|might)\b|"
                  r"^(?:does|do|did|has|have|had) (?:you|we|i|it|they|this|that|the|these|those|he|she|a|an|any|"
                  r"anything|something|my|our)\b")
REQUEST_PREFIX = (r"^(?:(?:can|could|would|will) (?:you|we|u) (?:please |kindly |maybe |just )?|would you mind |"
                 r"i would like (?:you )?to |i want (?:you )?to |i need (?:you )?to |we need to |you (?:should|"
                 r"need to|must|have to) |please |kindly |let us |lets |go ahead and |try to |"
                 r"it would be (?:good|nice|great) (?:to|if you) |is it possible to |maybe |just |ok |okay |so )+")
APPROVAL_PATTERNS = [
    r"\b(?:looks?|looking|seems?|is|are|appears?)\s+(?:\w+ )?(?:fine|good|great|ok|okay|correct|right|perfect|"
    r"accurate|spot on|excellent|nice|reasonable|acceptable|alright|all right|fantastic|superb|flawless|solid)\b",
    r"^(?:ok|okay|fine|good|great|perfect|thanks|thank you|nice|excellent|well done|good job|great job|nice work|"
    r"good work|lgtm|all good|approved?|accept(?:ed)?|confirmed?|correct|yes|yep|agreed?)\b",
    r"\bno (?:changes?|edits?|corrections?|problems?|issues?) (?:needed|necessary|required)?|"
    r"\bnothing to (?:change|do|fix|correct|edit)\b|\b(?:leave|keep) (?:it|them|everything|all|this|that|"
    r"the \w+)(?: \w+)? (?:as (?:it is|is|they are)|alone|unchanged|the same)\b|\bdo not (?:touch|change|edit|"
    r"modify)\b|\bdo nothing\b|\bno action\b",
]
CLAUSE_SPLIT = (r",|\band then\b|\bthen\b|\band also\b|\band\b|\bbut\b|\bplus\b|\bwhile\b|\bwhereas\b|"
               r"\bas well as\b|\balso\b(?= (?:segment|label|mark|add|include|shrink|expand|remove|delete|ignore|"
               r"make|enlarge))|\bso\b|\bhowever\b")
REASON_SPLIT = r"\bbecause(?: of)?\b|\bdue to\b|\bcaused by\b|\bas a result of\b|\bsince\b|\bthanks to\b|\bowing to\b"
