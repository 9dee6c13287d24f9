/* test_chat.c - the built-in chat format equals DeepSeek-V3's Jinja chat_template.
 *
 * The expected strings were rendered from tests/data/deepseek-v3-tokenizer/
 * tokenizer_config.json's chat_template with Jinja2 3.1 configured as
 * transformers' apply_chat_template does (trim_blocks, lstrip_blocks), with
 * bos_token = "<｜begin▁of▁sentence｜>". Also: unsupported roles are refused
 * with the message index, and the template detector recognises the file. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/serve/chat.h"
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

Test(chat, detects_deepseek_template) {
    char dir[1024];
    cr_assert_eq(chat_template_detect(test_data_path(dir, sizeof dir, "deepseek-v3-tokenizer")), CHAT_TEMPLATE_DEEPSEEK);
    cr_assert_eq(chat_template_detect(test_data_path(dir, sizeof dir, "tiny-tokenizer")), CHAT_TEMPLATE_DEEPSEEK);
    cr_assert_eq(chat_template_detect(test_data_path(dir, sizeof dir, "golden/tiny-f32")), CHAT_TEMPLATE_NONE);
}
