#!/usr/bin/python3
"""check_chat_templates.py - the C chat-template interpreter against python3-jinja2.

Every template in tests/data/templates/*.jinja is rendered for every message
list below, with add_generation_prompt true and false, twice: by Jinja2 set up
as transformers' apply_chat_template sets it up (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, its tojson and raise_exception), and
by `spex chat-template --lines` (one run per template and flag). The outputs
must be byte-identical; a list the template refuses must be refused by both,
with the same message when it is the template's raise_exception.

usage: check_chat_templates.py SPEX_BINARY TEST_DATA_DIR
"""
import glob
import json
import os
import subprocess
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def special_tokens(config_path):
    cfg = json.load(open(config_path, encoding="utf-8"))
    out = {}
    for name in ("bos_token", "eos_token", "pad_token", "unk_token"):
        t = cfg.get(name)
        if isinstance(t, dict):
            t = t.get("content")
        if isinstance(t, str):
            out[name] = t
    return out


TOOL_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Bath\"}"}}
TOOL_CALL_DICT = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Bath", "days": 3,
                                                                                         "units": ["c", None, True]}}}

CASES = {
    "user": [{"role": "user", "content": "Hello"}],
    "system_user": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "multi_turn": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                   {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "How are you?"}],
    "assistant_last": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}],
    "systems_hoisted": [{"role": "user", "content": "a"}, {"role": "system", "content": "S1"},
                        {"role": "assistant", "content": "b"}, {"role": "system", "content": "S2"}],
    "empty_contents": [{"role": "system", "content": ""}, {"role": "user", "content": ""},
                       {"role": "assistant", "content": ""}, {"role": "user", "content": ""}],
    "developer": [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Hi"}],
    "whitespace_unicode": [{"role": "system", "content": "  \u3000Sois bref.\n"},
                           {"role": "user", "content": "\t«Emma» — ça va? 😀 \\n \"quotes\" 'single'\r\n  "},
                           {"role": "assistant", "content": "\u00a0Oui.\u2028"},
                           {"role": "user", "content": "multi\nline\n\nend\n"}],
    "think": [{"role": "user", "content": "2+2?"},
              {"role": "assistant", "content": "<think>\nadd them\n</think>\n\nFour."},
              {"role": "user", "content": "And 3+3?"}],
    "tool_call": [{"role": "user", "content": "Weather in Bath?"},
                  {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                  {"role": "tool", "content": "{\"temp\": 12}"},
                  {"role": "assistant", "content": "It is 12 degrees."}],
    "tool_call_dict_args": [{"role": "system", "content": "sys"}, {"role": "user", "content": "Weather?"},
                            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL_DICT]},
                            {"role": "tool", "content": "sunny"}, {"role": "tool", "content": "warm"}],
    "two_tool_calls": [{"role": "user", "content": "Both?"},
                       {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL, TOOL_CALL]},
                       {"role": "tool", "content": "a"}, {"role": "tool", "content": "b"}],
    "long": [{"role": "user" if i % 2 == 0 else "assistant", "content": "turn %d" % i} for i in range(41)],
}


def render_python(env, source, messages, gen, specials):
    try:
        tmpl = env.from_string(source)
        return tmpl.render(messages=messages, add_generation_prompt=gen, tools=None, documents=None,
                           **specials).encode("utf-8")
    except Exception as e:  # the template refuses this list
        return e


def render_c(spex, model_dir, template, lists, gen):
    """Every list in one `spex chat-template --lines` run: bytes, or an error string, per list."""
    cmd = [spex, "chat-template", "--model", model_dir, "--chat-template", template, "--lines"]
    if not gen:
        cmd.append("--no-generation-prompt")
    stdin = "".join(json.dumps(m, ensure_ascii=False) + "\n" for m in lists).encode("utf-8")
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit("spex chat-template failed (%d): %s" % (p.returncode, p.stderr.decode("utf-8", "replace")))
    out = []
    for line in p.stdout.decode("utf-8").split("\n")[:-1]:   # not splitlines(): U+2028 is in the text
        v = json.loads(line)
        out.append(v["error"] if isinstance(v, dict) else v.encode("utf-8"))
    if len(out) != len(lists):
        sys.exit("spex chat-template --lines gave %d lines for %d lists" % (len(out), len(lists)))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    spex, data = sys.argv[1], sys.argv[2]
    model_dir = os.path.join(data, "deepseek-v3-tokenizer")
    specials = special_tokens(os.path.join(model_dir, "tokenizer_config.json"))
    env = make_env()
    templates = sorted(glob.glob(os.path.join(data, "templates", "*.jinja")))
    if not templates:
        sys.exit("no templates under %s/templates" % data)
    failures, checks, refused = 0, 0, 0
    names = list(CASES)
    for template in templates:
        source = open(template, encoding="utf-8").read()
        for gen in (True, False):
            got_all = render_c(spex, model_dir, template, [CASES[n] for n in names], gen)
            for name, got in zip(names, got_all):
                want = render_python(env, source, CASES[name], gen, specials)
                checks += 1
                label = "%s / %s / add_generation_prompt=%s" % (os.path.basename(template), name, gen)
                if isinstance(want, Exception):
                    refused += 1
                    if not isinstance(got, str):
                        failures += 1
                        print("FAIL %s: jinja2 refused (%s) but spex rendered %r" % (label, want, got))
                    elif type(want) is jinja2.exceptions.TemplateError and "raise_exception: %s" % want not in got:
                        failures += 1   # the template's own message must reach the client
                        print("FAIL %s: jinja2 raised %r, spex said %r" % (label, str(want), got))
                    continue
                if got != want:
                    failures += 1
                    print("FAIL %s\n  jinja2: %r\n  spex:   %r" % (label, want, got))
    print("%d checks over %d templates (%d refused by both), %d failures" % (checks, len(templates), refused, failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
