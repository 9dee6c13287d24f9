/* test_api.c - the OpenAI request/response schema (server/api.h) and JSON escaping
 * (core/strbuf.h): accepted prompt shapes, defaults, every type and range
 * check naming its field, chat prompts equal to the rendered template, and
 * responses / SSE chunks / errors that parse as JSON of OpenAI's shape even
 * when the model produced invalid UTF-8.
 *
 * The unit tests link the coordinator libraries only; server/api.c needs
 * nothing else (no libmicrohttpd), so it is compiled into this test directly. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/api.c"
#include "coordinator/serve/chat.h"
#include "testutil.h"

static tokenizer_t *tok;
static api_ctx_t ctx;

static void setup(void) {
    char path[1024];
    spex_err_t err = {0};
    tok = tokenizer_load(test_data_path(path, sizeof path, "tiny-tokenizer/tokenizer.json"), &err);
    cr_assert_not_null(tok, "%s", err.msg);
    ctx = (api_ctx_t){.tok = tok, .model_name = "tiny", .vocab_size = 320};
}

static void teardown(void) { tokenizer_free(tok); }

TestSuite(api, .init = setup, .fini = teardown);

static const api_defaults_t DEFAULTS = {.temperature = 1.0f};

static int parse(api_kind_t kind, const char *json, api_request_t *r, api_error_t *e) {
    cJSON *root = cJSON_Parse(json);
    cr_assert_not_null(root, "test JSON: %s", json);
    int rc = api_parse_request(&ctx, kind, root, &DEFAULTS, r, e);
    cJSON_Delete(root);
    return rc;
}

static void expect_bad(api_kind_t kind, const char *json, int status, const char *param) {
    api_request_t r;
    api_error_t e;
    cr_assert_eq(parse(kind, json, &r, &e), -1, "accepted: %s", json);
    cr_assert_eq(e.status, status, "%s: status %d", json, e.status);
    if (param) cr_assert(e.param && !strcmp(e.param, param), "%s: param %s", json, e.param ? e.param : "null");
}

Test(api, completion_prompt_shapes_and_defaults) {
    api_request_t r;
    api_error_t e;
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":\"It is\",\"unknown_field\":{\"x\":1},\"user\":null}", &r, &e), 0,
                 "%s", e.message);
    int32_t *ids;
    size_t n;
    spex_err_t err = {0};
    cr_assert_eq(tokenizer_encode(tok, "It is", 5, true, &ids, &n, &err), 0);
    cr_assert_eq(r.n_prompt, (int)n);
    cr_assert_arr_eq(r.prompt, ids, n * sizeof(int32_t));
    cr_assert_eq(r.prompt[0], 0, "BOS added as tokenizer_config.json asks");
    cr_assert_eq(r.params.max_tokens, 16, "OpenAI's default for completions");
    cr_assert_float_eq(r.params.sampling.temperature, 1.0f, 0);
    cr_assert_eq(r.params.spec_k, -1);
    cr_assert_not(r.stream);
    free(ids);
    api_request_free(&r);
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":[5,6,7],\"max_tokens\":3,\"temperature\":0,\"seed\":42,"
                                       "\"stop\":[\"a\",\"bc\"],\"stream\":true,\"spec_k\":1,\"top_k\":-1,"
                                       "\"stream_options\":{\"include_usage\":true},\"model\":\"tiny\"}",
                       &r, &e),
                 0, "%s", e.message);
    cr_assert_eq(r.n_prompt, 3);
    cr_assert_eq(r.prompt[2], 7);
    cr_assert_eq(r.params.max_tokens, 3);
    cr_assert_eq(r.params.sampling.seed, 42);
    cr_assert_eq(r.params.sampling.top_k, 0);
    cr_assert_eq(r.params.n_stop, 2);
    cr_assert_str_eq(r.params.stop[1], "bc");
    cr_assert(r.stream && r.include_usage);
    cr_assert_eq(r.params.spec_k, 1);
    api_request_free(&r);
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":[[9,8]]}", &r, &e), 0);
    cr_assert_eq(r.n_prompt, 2);
    api_request_free(&r);
    cr_assert_eq(parse(API_COMPLETION, "{\"prompt\":[\"x\"],\"max_completion_tokens\":4}", &r, &e), 0);
    cr_assert_eq(r.params.max_tokens, 4);
    api_request_free(&r);
}

Test(api, wrong_types_and_ranges_name_the_field) {
    expect_bad(API_COMPLETION, "[1,2]", 400, NULL);
    expect_bad(API_COMPLETION, "{}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":5}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":[]}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":[1,320]}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":[1,2.5]}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", 400, "prompt");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":\"10\"}", 400, "max_tokens");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":1.5}", 400, "max_tokens");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":2.5}", 400, "temperature");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"temperature\":\"hot\"}", 400, "temperature");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"top_p\":0}", 400, "top_p");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"top_k\":-2}", 400, "top_k");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"seed\":\"1\"}", 400, "seed");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"n\":2}", 400, "n");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stream\":\"yes\"}", 400, "stream");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stream_options\":true}", 400, "stream_options");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stop\":5}", 400, "stop");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"\"]}", 400, "stop");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\","
                               "\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}", 400, "stop");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"spec_k\":9}", 400, "spec_k");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"model\":\"gpt-4\"}", 404, "model");
    expect_bad(API_COMPLETION, "{\"prompt\":\"x\",\"model\":7}", 400, "model");
    expect_bad(API_CHAT, "{\"prompt\":\"x\"}", 400, "messages");
    expect_bad(API_CHAT, "{\"messages\":[]}", 400, "messages");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "messages");
    expect_bad(API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages");
    expect_bad(API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400,
               "messages");
}

Test(api, chat_prompt_is_the_rendered_template) {
    api_request_t r;
    api_error_t e;
    cr_assert_eq(parse(API_CHAT, "{\"messages\":[{\"role\":\"system\",\"content\":\"Be kind.\"},{\"role\":\"user\","
                                 "\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},{\"type\":\"text\",\"text\":"
                                 "\"there\"}]}]}",
                       &r, &e),
                 0, "%s", e.message);
    chat_message_t m[] = {{"system", "Be kind.", 0}, {"user", "Hi there", 0}};
    spex_err_t err = {0};
    char *text = chat_render(m, 2, "<｜begin▁of▁sentence｜>", true, &err);
    int32_t *ids;
    size_t n;
    cr_assert_eq(tokenizer_encode(tok, text, strlen(text), false, &ids, &n, &err), 0);
    cr_assert_eq(r.n_prompt, (int)n);
    cr_assert_arr_eq(r.prompt, ids, n * sizeof(int32_t));
    cr_assert_eq(r.prompt[0], 0, "the template's BOS became the BOS token");
    cr_assert_eq(r.params.max_tokens, 0, "chat default: as many as fit");
    free(ids);
    free(text);
    api_request_free(&r);
}

Test(api, json_escaping_keeps_output_valid) {
    strbuf_t b = {0};
    const char raw[] = "a\"b\\c\n\x01\xff\xe2\x82\xac\xe2\x82 end";
    sb_json_str(&b, raw, sizeof raw - 1);
    cJSON *v = cJSON_Parse(b.p);
    cr_assert(cJSON_IsString(v), "%s", b.p);
    cr_assert_str_eq(v->valuestring, "a\"b\\c\n\x01\xef\xbf\xbd\xe2\x82\xac\xef\xbf\xbd\xef\xbf\xbd end");
    cJSON_Delete(v);
    sb_free(&b);
    char nul[] = {'x', 0, 'y'};
    sb_json_str(&b, nul, 3);
    cr_assert_str_eq(b.p, "\"x\\u0000y\"");
    sb_free(&b);
}

Test(api, responses_chunks_and_errors_have_openai_shape) {
    api_request_t rq = {.kind = API_CHAT, .n_prompt = 5, .return_tokens = true};
    int32_t toks[] = {7, 8, 1};
    sched_result_t res = {.finish_reason = "stop", .text = "hi\xff", .text_len = 3, .tokens = toks, .n_tokens = 3,
                          .prompt_tokens = 5};
    strbuf_t b = {0};
    api_response_json(&b, &rq, "chatcmpl-1", 123, "tiny", &res);
    cJSON *o = cJSON_Parse(b.p);
    cr_assert_not_null(o, "%s", b.p);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion");
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "message"), "content")->valuestring, "hi\xef\xbf\xbd");
    cr_assert_str_eq(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "stop");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(ch, "tokens")), 3);
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "total_tokens")->valueint, 8);
    cJSON_Delete(o);
    sb_reset(&b);
    api_chunk_sse(&b, &rq, "chatcmpl-1", 123, "tiny", "x", 1, true, NULL, 2);
    cr_assert_eq(strncmp(b.p, "data: {", 7), 0);
    cr_assert_eq(strcmp(b.p + b.n - 2, "\n\n"), 0);
    o = cJSON_Parse(b.p + 6);
    cr_assert_str_eq(cJSON_GetObjectItem(o, "object")->valuestring, "chat.completion.chunk");
    ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cr_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(ch, "delta"), "role")->valuestring, "assistant");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(ch, "finish_reason")));
    cr_assert_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "usage"), "completion_tokens")->valueint, 2);
    cJSON_Delete(o);
    sb_reset(&b);
    api_error_t e;
    api_submit_error(SCHED_QUEUE_FULL, NULL, "busy", &e);
    cr_assert_eq(e.status, 429);
    api_error_json(&b, &e);
    o = cJSON_Parse(b.p);
    cJSON *err = cJSON_GetObjectItem(o, "error");
    cr_assert_str_eq(cJSON_GetObjectItem(err, "message")->valuestring, "busy");
    cr_assert_str_eq(cJSON_GetObjectItem(err, "type")->valuestring, "rate_limit_error");
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(err, "param")));
    cr_assert_str_eq(cJSON_GetObjectItem(err, "code")->valuestring, "queue_full");
    cJSON_Delete(o);
    sb_free(&b);
    sched_result_t down = {.finish_reason = "cancelled", .shutdown = true};
    cr_assert(api_result_error(&down, &e));
    cr_assert_eq(e.status, 503);
    sched_result_t broken = {.finish_reason = "error", .error = "rank 2: worker died"};
    cr_assert(api_result_error(&broken, &e));
    cr_assert_eq(e.status, 500);
    cr_assert(strstr(e.message, "rank 2"));
    cr_assert_not(api_result_error(&res, &e));
}
