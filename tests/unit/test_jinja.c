/* test_jinja.c - the Jinja2-subset interpreter (coordinator/serve/jinja.h), construct by construct.
 *
 * Expected strings are what python3-jinja2 3.1 renders with transformers'
 * settings (trim_blocks, lstrip_blocks); whole real templates are compared
 * with Jinja2 itself by tests/ref/check_chat_templates.py. Also: compile
 * errors name the construct with its line:column, runtime errors are values,
 * and the step, memory, size and depth limits stop hostile templates. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/jinja.h"

/* Render src with variables from a JSON object (may be NULL); NULL with err on failure. */
static char *render_lim(const char *src, const char *vars_json, const jinja_limits_t *lim, spex_err_t *err) {
    jinja_template_t *t = jinja_compile(src, strlen(src), lim, err);
    if (!t) return NULL;
    jinja_ctx_t *c = jinja_ctx_create(t);
    cr_assert_not_null(c);
    cJSON *vars = vars_json ? cJSON_Parse(vars_json) : NULL;
    if (vars_json) cr_assert_not_null(vars, "bad test JSON %s", vars_json);
    for (cJSON *v = vars ? vars->child : NULL; v; v = v->next)
        cr_assert_eq(jinja_ctx_set_json(c, v->string, v, NULL, err), 0, "%s", err->msg);
    cJSON_Delete(vars);
    char *out = jinja_render(t, c, NULL, err);
    jinja_ctx_free(c);
    jinja_free(t);
    return out;
}

static void expect(const char *src, const char *vars, const char *want) {
    spex_err_t err = {0};
    char *got = render_lim(src, vars, NULL, &err);
    cr_assert_not_null(got, "template %s: %s", src, err.msg);
    cr_expect_str_eq(got, want, "template %s", src);
    free(got);
}

static void expect_error(const char *src, const char *vars, const char *want) {
    spex_err_t err = {0};
    char *got = render_lim(src, vars, NULL, &err);
    cr_expect_null(got, "template %s rendered '%s'", src, got ? got : "");
    free(got);
    cr_expect(strstr(err.msg, want), "template %s: error '%s' lacks '%s'", src, err.msg, want);
}

Test(jinja_lex, text_and_newlines) {
    expect("plain text", NULL, "plain text");
    expect("one trailing newline is dropped\n", NULL, "one trailing newline is dropped");
    expect("two\n\n", NULL, "two\n");
    expect("crlf\r\nand cr\rend", NULL, "crlf\nand cr\nend");
    expect("{ and } and {x}", NULL, "{ and } and {x}");
}

Test(jinja_lex, whitespace_control) {
    expect("a  {{- 'b' -}}  \n c", NULL, "abc");
    expect("a\n{% if true %}\nb\n{% endif %}\nc", NULL, "a\nb\nc");       /* trim_blocks */
    expect("a\n    {% if true %}b{% endif %}", NULL, "a\nb");              /* lstrip_blocks */
    expect("a\n    {%+ if true %}b{% endif %}", NULL, "a\n    b");          /* {%+ keeps it */
    expect("a\n  x {% if true %}b{% endif %}", NULL, "a\n  x b");          /* not alone on its line */
    expect("{% if true +%}\nb{% endif %}", NULL, "\nb");                    /* +%} keeps the newline */
    expect("a\n    {{ 'v' }}\n", NULL, "a\n    v");                         /* {{ }} is never lstripped */
    expect("a {# comment #}b", NULL, "a b");
    expect("a\n  {# comment #}\nb", NULL, "a\nb");
    expect("a {#- comment -#} b", NULL, "ab");
    expect("{{ {'a': {'b': 1}} }}", NULL, "{'a': {'b': 1}}");              /* }} inside brackets */
}

Test(jinja_lex, string_literals) {
    expect("{{ 'it\\'s' ~ \"\\\"q\\\"\" ~ '\\n\\t\\\\' ~ '\\u00e9\\x41' ~ 'a' 'b' }}", NULL, "it's\"q\"\n\t\\éAab");
    expect("{{ '\\d' }}", NULL, "\\d");   /* unknown escapes stay */
}

Test(jinja_expr, arithmetic_and_precedence) {
    expect("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 2 ** 3 ** 2 }} {{ -2 ** 2 }}", NULL, "7 9 64 4");
    expect("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 6 / 3 }}", NULL, "3 -4 2 -2 3.5 2.0");
    expect("{{ 'a' + x | trim + 'b' }}", "{\"x\": \"  y  \"}", "ayb");   /* filters bind tighter than + */
    expect("{{ 'x' + 1 ~ 2 }}", NULL, "x12");                             /* ~ binds tighter than + */
    expect("{{ 'n' ~ none ~ true ~ 1.5 ~ undefined_thing }}", NULL, "nNoneTrue1.5");
    expect("{{ [1] + [2, 'x'] }} {{ 'ab' * 3 }} {{ true + 1 }}", NULL, "[1, 2, 'x'] ababab 2");
    expect("{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.0 }} {{ 0.0001 }} {{ 0.00001 }} {{ 123456789.125 }}", NULL,
           "0.30000000000000004 1e+16 1.0 0.0001 1e-05 123456789.125");
}

Test(jinja_expr, comparisons_and_logic) {
    expect("{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' < 'b' }} {{ [1, 2] == [1, 2] }} {{ 1 == 1.0 }} {{ 1 == true }}", NULL,
           "True False True True True True");
    expect("{{ 'ell' in 'hello' }} {{ 'x' not in ['x'] }} {{ 'k' in {'k': 1} }} {{ 3 in [1, 2] }}", NULL,
           "True False True False");
    expect("{{ 0 or 'b' }} {{ 'a' and 'b' }} {{ '' and 'b' }}|{{ none or [] }}", NULL, "b b |[]");
    expect("{{ not x is defined }} {{ not 1 == 2 }}", NULL, "True True");
    expect("{{ 'y' if x else 'n' }} {{ 'y' if not x }}|", "{\"x\": 0}", "n y|");
}

Test(jinja_expr, str_and_repr) {
    expect("{{ none }} {{ True }} {{ [1, 'a', none, [true]] }} {{ {'k': 'v', 'q': \"it's\"} }} {{ (1,) }} {{ (1, 2) }}",
           NULL, "None True [1, 'a', None, [True]] {'k': 'v', 'q': \"it's\"} (1,) (1, 2)");
    expect("{{ ['a\\nb'] }}", NULL, "['a\\nb']");
}

Test(jinja_expr, indexing_and_slicing) {
    const char *v = "{\"m\": [{\"role\": \"system\"}, {\"role\": \"user\"}, {\"role\": \"assistant\"}], \"s\": \"héllo\"}";
    expect("{{ m[0]['role'] }} {{ m[-1].role }} {{ m[5] }}|{{ m[0].missing }}|{{ m.0.role }}", v, "system assistant ||system");
    expect("{{ m[1:] | length }} {{ m[:-1][-1].role }} {{ m[::-1][0].role }} {{ m[1:2][0].role }}", v, "2 user assistant user");
    expect("{{ s[1] }} {{ s[1:3] }} {{ s[::-1] }} {{ s | length }} {{ s[-1] }}", v, "é él olléh 5 o");
}

Test(jinja_stmt, if_elif_else) {
    const char *src = "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %} {% endfor %}";
    expect(src, NULL, "one two many ");
    expect("{% if none %}a{% endif %}b", NULL, "b");
}

Test(jinja_stmt, for_loops) {
    expect("{% for x in 'abc' %}{{ loop.index }}{{ x }}{{ '|' if not loop.last }}{% endfor %}", NULL, "1a|2b|3c");
    expect("{% for x in [5, 6, 7] %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}{{ loop.length }} {% endfor %}",
           NULL, "03True3 12False3 21False3 ");
    expect("{% for x in [1, 2] %}{{ loop.previtem }}-{{ loop.nextitem }} {% endfor %}", NULL, "-2 1- ");
    expect("{% for x in [] %}a{% else %}empty{% endfor %}", NULL, "empty");
    expect("{% for x in undefined_list %}a{% endfor %}ok", NULL, "ok");
    expect("{% for x in range(10) if x is odd %}{{ x }}{{ loop.length }} {% endfor %}", NULL, "15 35 55 75 95 ");
    expect("{% for k, v in {'a': 1, 'b': 2} | items %}{{ k }}={{ v }};{% endfor %}", NULL, "a=1;b=2;");
    expect("{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}{% for k in d %}{{ k }}{% endfor %}",
           "{\"d\": {\"x\": 1, \"y\": [2]}}", "x1y[2]xy");
    expect("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
           NULL, "013");
    expect("{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}{% endfor %}",
           NULL, "113 214 1123 224 2");
}

Test(jinja_stmt, set_scoping_and_namespace) {
    expect("{% set x = 1 %}{% for i in [1, 2] %}{% set x = i * 10 %}{{ x }} {% endfor %}{{ x }}", NULL, "10 20 1");
    expect("{% set ns = namespace(n=0, s='') %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% set ns.s = ns.s ~ i %}"
           "{% endfor %}{{ ns.n }} {{ ns.s }}", NULL, "6 123");
    expect("{% if true %}{% set x = 'in if' %}{% endif %}{{ x }}", NULL, "in if");   /* if has no scope */
    expect("{% set messages = messages[1:] %}{{ messages | length }}", "{\"messages\": [1, 2, 3]}", "2");
    expect("{% set t %}a{{ 1 + 1 }}b{% endset %}[{{ t }}]", NULL, "[a2b]");
    expect("{% set a = 1, 2 %}{{ a }}", NULL, "(1, 2)");
    expect_error("{% set x = 1 %}{% set x.y = 2 %}", NULL, "only a namespace() has settable attributes");
}

Test(jinja_stmt, generation_block) {   /* transformers' AssistantTracker tag: renders its body */
    expect("a{% generation %}{{ 1 + 1 }}{% endgeneration %}b", NULL, "a2b");
}

Test(jinja_builtins, filters) {
    expect("[{{ '  a b \\n' | trim }}] [{{ 'xxaxx' | trim('x') }}] [{{ none | trim }}]", NULL, "[a b] [a] [None]");
    expect("{{ [1, 'a'] | join(', ') }} {{ 'abc' | join('-') }} {{ [{'n': 'x'}, {'n': 'y'}] | join('+', attribute='n') }}",
           NULL, "1, a a-b-c x+y");
    expect("{{ 'Hello' | upper }} {{ 'Hello' | lower }} {{ 'hello world' | title }} {{ 'hELLO' | capitalize }}", NULL,
           "HELLO hello Hello World Hello");
    expect("{{ missing | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }} {{ missing | d }}|", NULL,
           "d  d |");
    expect("{{ [3, 4] | first }} {{ [3, 4] | last }} {{ 'xyz' | last }} {{ 'ab' | list }} {{ {'a': 1} | length }}", NULL,
           "3 4 z ['a', 'b'] 1");
    expect("{{ '42' | int + 1 }} {{ 'x' | int }} {{ 3.9 | int }} {{ -3 | abs }} {{ 'aXbX' | replace('X', '-') }}", NULL,
           "43 0 3 3 a-b-");
    expect("{{ [1, none, 2, none] | reject('none') | list }} {{ [1, 2, 3, 4] | select('even') | list }}", NULL,
           "[1, 2] [2, 4]");
    expect("{{ ['a', 'b', 'code'] | reject('equalto', 'code') | join(', ') }}", NULL, "a, b");
    expect("{{ m | selectattr('role', 'equalto', 'user') | map(attribute='content') | join }} {{ [' a', 'b '] | map('trim') | join }}",
           "{\"m\": [{\"role\": \"user\", \"content\": \"u1\"}, {\"role\": \"bot\", \"content\": \"b\"}, {\"role\": \"user\", \"content\": \"u2\"}]}",
           "u1u2 ab");
    expect("{{ '<a & \"b\">' | e }} {{ '<x>' | safe }} {{ 5 | string ~ 'x' }}", NULL, "&lt;a &amp; &#34;b&#34;&gt; <x> 5x");
}

Test(jinja_builtins, tojson) {
    const char *v = "{\"t\": {\"name\": \"f\", \"args\": {\"city\": \"Bath\", \"n\": [1, 2.5, null, true]}, \"u\": \"é\\\"\\n<\"}}";
    expect("{{ t | tojson }}", v,
           "{\"name\": \"f\", \"args\": {\"city\": \"Bath\", \"n\": [1, 2.5, null, true]}, \"u\": \"é\\\"\\n<\"}");
    expect("{{ t.args | tojson(indent=2) }}", v,
           "{\n  \"city\": \"Bath\",\n  \"n\": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}");
    expect("{{ {'b': 1, 'a': []} | tojson(sort_keys=true) }} {{ {} | tojson(indent=4) }}", NULL, "{\"a\": [], \"b\": 1} {}");
    expect_error("{{ missing | tojson }}", NULL, "not JSON serializable");
}

Test(jinja_builtins, tests) {
    expect("{{ x is none }} {{ x is not none }} {{ y is none }} {{ y is defined }} {{ z is defined }}",
           "{\"x\": null, \"y\": 1}", "True False False True False");
    expect("{{ 'a' is string }} {{ {} is mapping }} {{ [] is iterable }} {{ 1 is number }} {{ 1 is integer }} {{ true is boolean }}",
           NULL, "True True True True True True");
    expect("{{ 1 is equalto 1 }} {{ 3 is divisibleby 3 }} {{ 2 is odd }} {{ 'abc' is lower }} {{ 1 is in [1] }}", NULL,
           "True True False True True");
}

Test(jinja_builtins, methods) {
    expect("[{{ '  x  '.strip() }}] [{{ '  x  '.lstrip() }}] [{{ '  x  '.rstrip() }}] [{{ 'xxaxx'.strip('x') }}]", NULL,
           "[x] [x  ] [  x] [a]");
    expect("{{ 'a</think>b</think>c'.split('</think>')[-1] }} {{ ' a  b '.split() }} {{ 'a,b,c'.split(',', 1) }}", NULL,
           "c ['a', 'b'] ['a', 'b,c']");
    expect("{{ 'hello'.startswith('he') }} {{ 'hello'.endswith(('x', 'lo')) }} {{ 'hello'.find('l') }} {{ '-'.join(['a', 'b']) }}",
           NULL, "True True 2 a-b");
    expect("{{ d.get('a') }} {{ d.get('z', 'dflt') }} {{ d.keys() | list }} {{ d.values() | list }}",
           "{\"d\": {\"a\": 1, \"b\": 2}}", "1 dflt ['a', 'b'] [1, 2]");
    expect("[{{ '\\u3000x\\u00a0'.strip() }}]", NULL, "[x]");   /* Python's Unicode whitespace */
}

Test(jinja_errors, compile_errors_name_the_construct_and_position) {
    expect_error("a\n{{ x | frobnicate }}", NULL, "2:8: unsupported filter 'frobnicate'");
    expect_error("{{ x is frob }}", NULL, "1:9: unsupported test 'frob'");
    expect_error("{{ x.frob() }}", NULL, "1:6: unsupported method 'frob'");
    expect_error("{{ lipsum() }}", NULL, "1:4: unsupported function 'lipsum'");
    expect_error("{% macro m() %}{% endmacro %}", NULL, "1:4: unsupported statement 'macro'");
    expect_error("{% include 'x' %}", NULL, "unsupported statement 'include'");
    expect_error("{% frob %}", NULL, "1:4: unknown statement 'frob'");
    expect_error("{% if x %}a", NULL, "missing {% endif %}");
    expect_error("{% for x in y %}a{% endif %}", NULL, "unexpected 'endif'");
    expect_error("{% break %}", NULL, "'break' outside a loop");
    expect_error("{{ x ", NULL, "1:1: unclosed '{{'");
    expect_error("{# x", NULL, "unclosed comment");
    expect_error("{{ 'abc }}", NULL, "unterminated string");
    expect_error("{{ x + }}", NULL, "1:8: expected an expression");
    expect_error("{{ x y }}", NULL, "expected '}}'");
    expect_error("{% for x in y recursive %}{% endfor %}", NULL, "unsupported: recursive loops");
    expect_error("{{ f(*a) }}", NULL, "unsupported function 'f'");
    expect_error("{{ x | map(*a) }}", NULL, "*args");
}

Test(jinja_errors, runtime_errors) {
    expect_error("{{ missing.attr }}", NULL, "1:12: 'missing' is undefined");
    expect_error("{{ missing['k'] }}", NULL, "'missing' is undefined");
    expect_error("{{ 'a' + 1 }}", NULL, "unsupported operand types for +: string and int");
    expect_error("{{ missing + 'a' }}", NULL, "'missing' is undefined");
    expect_error("{{ raise_exception('Conversation roles must alternate') }}", NULL,
                 "raise_exception: Conversation roles must alternate");
    expect_error("{{ 1 // 0 }}", NULL, "division by zero");
    expect_error("{{ 9223372036854775807 + 1 }}", NULL, "integer overflow");
    expect_error("{{ [1] < 'a' }}", NULL, "cannot order");
    expect_error("{% for x in 5 %}{% endfor %}", NULL, "cannot iterate");
    expect_error("{{ 'x'.items() }}", NULL, "not a method of strings");
    expect_error("{{ 'abc' | trim(1) }}", NULL, "chars must be a string");
    expect_error("{{ 'x' | tojson(separators=1) }}", NULL, "unexpected keyword argument 'separators'");
    expect_error("{{ [1] | select('frob') | list }}", NULL, "unsupported test 'frob'");
}

Test(jinja_limits, hostile_templates_are_stopped) {
    jinja_limits_t lim = jinja_default_limits();
    lim.max_steps = 100000;
    lim.max_memory = 8u << 20;
    spex_err_t err = {0};
    char *out = render_lim("{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}", NULL, &lim, &err);
    cr_expect_null(out);
    cr_expect(strstr(err.msg, "step limit"), "%s", err.msg);
    lim.max_steps = 100000000;   /* the memory limit alone, from here on */
    out = render_lim("{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                     NULL, &lim, &err);
    cr_expect_null(out);
    cr_expect(strstr(err.msg, "memory limit"), "%s", err.msg);
    out = render_lim("{% for i in range(100000) %}0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef{% endfor %}",
                     NULL, &lim, &err);
    cr_expect_null(out);
    cr_expect(strstr(err.msg, "memory limit"), "%s", err.msg);
    out = render_lim("{{ 'x' * 100000000 }}", NULL, &lim, &err);
    cr_expect_null(out);
    cr_expect(strstr(err.msg, "memory limit"), "%s", err.msg);
    out = render_lim("{% set s = 'x' * 1000000 %}{% for i in range(100000) %}{% if 'y' in s %}{% endif %}{% endfor %}",
                     NULL, &lim, &err);   /* work on big values costs steps in proportion */
    cr_expect_null(out);
    cr_expect(strstr(err.msg, "step limit"), "%s", err.msg);
    out = render_lim("{{ range(1000000000) | length }}", NULL, &lim, &err);
    cr_expect_null(out);
    cr_expect(strstr(err.msg, "memory limit"), "%s", err.msg);
    out = render_lim("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
                     NULL, &lim, &err);
    cr_expect_null(out);
    cr_expect(strstr(err.msg, "nested too deeply"), "%s", err.msg);
}

Test(jinja_limits, size_and_depth) {
    jinja_limits_t lim = jinja_default_limits();
    lim.max_template_bytes = 16;
    spex_err_t err = {0};
    cr_expect_null(render_lim("{{ 'seventeen bytes' }}", NULL, &lim, &err));
    cr_expect(strstr(err.msg, "larger than the 16-byte limit"), "%s", err.msg);
    char deep[4096] = "{{ ";
    for (int i = 0; i < 1000; i++) strcat(deep, "(");
    strcat(deep, "1");
    for (int i = 0; i < 1000; i++) strcat(deep, ")");
    strcat(deep, " }}");
    cr_expect_null(render_lim(deep, NULL, NULL, &err));
    cr_expect(strstr(err.msg, "nesting deeper than 128"), "%s", err.msg);
    char blocks[8192] = "";
    for (int i = 0; i < 200; i++) strcat(blocks, "{% if true %}");
    cr_expect_null(render_lim(blocks, NULL, NULL, &err));
    cr_expect(strstr(err.msg, "nesting deeper than 128"), "%s", err.msg);
    /* chains deepen the tree as much: a + b + c ..., filters, attributes, elif */
    static const char *const chains[] = {"{{ 1", " + 1", " }}", "{{ 'x'", " | trim", " }}", "{{ x", ".a", " }}",
                                         "{{ x", " or x", " }}", "{% if x %}", "{% elif x %}", "{% endif %}"};
    for (int c = 0; c < 5; c++) {
        char *src = malloc(100000);
        strcpy(src, chains[3 * c]);
        for (int i = 0; i < 5000; i++) strcat(src, chains[3 * c + 1]);
        strcat(src, chains[3 * c + 2]);
        cr_expect_null(render_lim(src, NULL, NULL, &err), "chain %d", c);
        cr_expect(strstr(err.msg, "nesting deeper than 128"), "chain %d: %s", c, err.msg);
        free(src);
    }
    expect("{{ 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 }}", NULL, "20");
}

Test(jinja_api, messages_with_nul_bytes_and_reuse) {
    spex_err_t err = {0};
    const char *src = "{% for m in messages %}{{ m.role }}:{% if m.content is not none %}{{ m['content'] | length }}{% endif %}:"
                      "{{ m.content is none }};{% endfor %}";
    jinja_template_t *t = jinja_compile(src, strlen(src), NULL, &err);
    cr_assert_not_null(t, "%s", err.msg);
    for (int round = 0; round < 2; round++) {   /* one template, several renders */
        jinja_ctx_t *c = jinja_ctx_create(t);
        const char *roles[] = {"user", "assistant"}, *contents[] = {"a\0b", NULL};
        size_t lens[] = {3, 0};
        cr_assert_eq(jinja_ctx_set_messages(c, "messages", 2, roles, contents, lens, &err), 0, "%s", err.msg);
        size_t len = 0;
        char *out = jinja_render(t, c, &len, &err);
        cr_assert_not_null(out, "%s", err.msg);
        cr_expect_str_eq(out, "user:3:False;assistant::True;");
        free(out);
        jinja_ctx_free(c);
    }
    jinja_free(t);
}
