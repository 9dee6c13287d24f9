/* test_chat.c - the built-in chat format equals DeepSeek-V3's Jinja chat_template.
 *
 * The expected strings were rendered from tests/data/deepseek-v3-tokenizer/
 * tokenizer_config.json's chat_template with Jinja2 3.1 configured as
 * transformers' apply_chat_template does (trim_blocks, lstrip_blocks), with
 * bos_token = "<｜begin▁of▁sentence｜>". Also: unsupported roles are refused
 * with the message index; the interpreter running the real template
 * (chat_template.h) gives the same prompts, on the test copy of DeepSeek-V3's
 * tokenizer_config.json and on the shipped model's; and which format a model
 * directory gets. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/chat.h"
#include "coordinator/serve/chat_template.h"
#include "testutil.h"

#define BOS "<｜begin▁of▁sentence｜>"

static void expect(const chat_message_t *m, int n, bool gen, const char *want) {
    spex_err_t err = {0};
    char *got = chat_render(m, n, BOS, gen, &err);
    cr_assert_not_null(got, "%s", err.msg);
    cr_assert_str_eq(got, want);
    free(got);
}

Test(chat, single_user_turn) {
    chat_message_t m[] = {{"user", "Hello", 0}};
    expect(m, 1, true, BOS "<｜User｜>Hello<｜Assistant｜>");
}

Test(chat, system_and_history) {
    chat_message_t m[] = {{"system", "Be brief.", 0}, {"user", "Hi", 0}, {"assistant", "Hello!", 0}, {"user", "How are you?", 0}};
    expect(m, 4, true,
           BOS "Be brief.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>How are you?<｜Assistant｜>");
}

Test(chat, system_messages_are_hoisted_and_joined) {
    chat_message_t m[] = {{"user", "a", 0}, {"system", "S1", 0}, {"assistant", "b", 0}, {"system", "S2", 0}};
    expect(m, 4, false, BOS "S1\n\nS2<｜User｜>a<｜Assistant｜>b<｜end▁of▁sentence｜>");
}

Test(chat, empty_system_and_newlines) {
    chat_message_t m[] = {{"system", "", 0}, {"user", "multi\nline", 0}};
    expect(m, 2, true, BOS "<｜User｜>multi\nline<｜Assistant｜>");
}

Test(chat, no_bos) {
    spex_err_t err = {0};
    chat_message_t m[] = {{"user", "x", 0}};
    char *got = chat_render(m, 1, NULL, true, &err);
    cr_assert_str_eq(got, "<｜User｜>x<｜Assistant｜>");
    free(got);
}

Test(chat, refuses_unsupported_roles) {
    spex_err_t err = {0};
    chat_message_t m[] = {{"user", "x", 0}, {"tool", "{}", 0}};
    cr_assert_null(chat_render(m, 2, BOS, true, &err));
    cr_assert(strstr(err.msg, "messages[1].role"), "%s", err.msg);
    cr_assert_null(chat_render(m, 0, BOS, true, &err));
    chat_message_t missing[] = {{"user", NULL, 0}};
    cr_assert_null(chat_render(missing, 1, BOS, true, &err));
    cr_assert(strstr(err.msg, "messages[0].content"), "%s", err.msg);
}

/* The cases above, rendered by the model's own template through the interpreter. */
static void same_as_builtin(const char *model_dir) {
    static const chat_message_t cases[][4] = {
        {{"user", "Hello", 0}},
        {{"system", "Be brief.", 0}, {"user", "Hi", 0}, {"assistant", "Hello!", 0}, {"user", "How are you?", 0}},
        {{"user", "a", 0}, {"system", "S1", 0}, {"assistant", "b", 0}, {"system", "S2", 0}},
        {{"system", "", 0}, {"user", "multi\nline", 0}},
        {{"user", "nul\0byte", 8}, {"assistant", "", 0}},
    };
    static const int counts[] = {1, 4, 4, 2, 2};
    spex_err_t err = {0};
    chat_template_t *t = chat_template_load(model_dir, NULL, &err);
    cr_assert_not_null(t, "%s", err.msg);
    cr_assert_not(chat_template_is_builtin(t), "%s", chat_template_describe(t));
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++)
        for (int gen = 0; gen < 2; gen++) {
            size_t want_len = 0, got_len = 0;
            char *want = chat_render_len(cases[c], counts[c], BOS, gen, &want_len, &err);
            char *got = chat_template_render(t, cases[c], counts[c], gen, &got_len, &err);
            cr_assert_not_null(got, "%s", err.msg);
            cr_expect(got_len == want_len && !memcmp(got, want, want_len), "%s case %zu gen %d: '%s' vs '%s'",
                      model_dir, c, gen, got, want);
            free(want);
            free(got);
        }
    chat_message_t tool[] = {{"user", "x", 0}, {"tool", "{}", 0}};   /* the roles check applies to templates too */
    cr_assert_null(chat_template_render(t, tool, 2, true, NULL, &err));
    cr_assert(strstr(err.msg, "messages[1].role"), "%s", err.msg);
    chat_template_free(t);
}

Test(chat, template_interpreter_matches_builtin) {
    char dir[1024];
    same_as_builtin(test_data_path(dir, sizeof dir, "deepseek-v3-tokenizer"));
    same_as_builtin(test_data_path(dir, sizeof dir, "tiny-tokenizer"));
    same_as_builtin(test_data_path(dir, sizeof dir, "../../models/austen-moe"));   /* the shipped model */
}

Test(chat, which_format_a_model_gets) {
    char dir[1024];
    spex_err_t err = {0};
    chat_template_t *t = chat_template_load(test_data_path(dir, sizeof dir, "golden/tiny-f32"), NULL, &err);
    cr_assert_not_null(t, "%s", err.msg);
    cr_expect(chat_template_is_builtin(t), "no tokenizer_config.json: the built-in format");
    chat_template_free(t);
    t = chat_template_load(test_data_path(dir, sizeof dir, "deepseek-v3-tokenizer"), "builtin", &err);
    cr_assert_not_null(t, "%s", err.msg);
    cr_expect(chat_template_is_builtin(t), "--chat-template builtin");
    chat_template_free(t);
    char file[1024];
    t = chat_template_load(test_data_path(dir, sizeof dir, "deepseek-v3-tokenizer"),
                           test_data_path(file, sizeof file, "templates/chatml.jinja"), &err);
    cr_assert_not_null(t, "%s", err.msg);
    chat_message_t m[] = {{"user", "Hi", 0}};
    char *text = chat_template_render(t, m, 1, true, NULL, &err);
    cr_assert_not_null(text, "%s", err.msg);
    cr_expect_str_eq(text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(text);
    chat_template_free(t);
    cr_expect_null(chat_template_load(NULL, "/nonexistent/t.jinja", &err));
    cr_expect(strstr(err.msg, "/nonexistent/t.jinja"), "%s", err.msg);
}
