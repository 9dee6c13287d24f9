/* api_fields.c - see api_fields.h. One table: field, the endpoints that know
 * it, and whether a value is the harmless one. */
#include "api_fields.h"

#include <string.h>

#include "server/json_str.h"

#define ON_COMPLETIONS 1
#define ON_CHAT 2
#define ON_BOTH 3

typedef bool (*harmless_fn)(const cJSON *v);

static bool is_one(const cJSON *v) { return cJSON_IsNumber(v) && v->valuedouble == 1; }
static bool is_empty_string(const cJSON *v) { return cJSON_IsString(v) && !v->valuestring[0]; }
static bool is_false(const cJSON *v) { return cJSON_IsFalse(v); }
static bool is_text_format(const cJSON *v) {
    return cJSON_IsObject(v) && json_str_is(cJSON_GetObjectItemCaseSensitive(v, "type"), "text");
}
static bool is_text_modality(const cJSON *v) {
    return cJSON_IsArray(v) && cJSON_GetArraySize(v) == 1 && json_str_is(cJSON_GetArrayItem(v, 0), "text");
}
static bool is_default_tier(const cJSON *v) { return json_str_is(v, "auto") || json_str_is(v, "default"); }
static bool is_none(const cJSON *v) { return json_str_is(v, "none"); }
static bool is_string(const cJSON *v) { return cJSON_IsString(v); }

typedef struct field_rule {
    const char *name;
    int endpoints;           /* where OpenAI defines it */
    harmless_fn harmless;    /* NULL: any value is refused */
    const char *why;         /* completes "'%s' ..." */
} field_rule_t;

static const field_rule_t RULES[] = {
    {"best_of", ON_COMPLETIONS, is_one, "other than 1 is not supported (use n)"},
    {"suffix", ON_COMPLETIONS, is_empty_string, "(insertion) is not supported"},
    {"response_format", ON_CHAT, is_text_format, "other than {\"type\": \"text\"} is not supported"},
    {"tools", ON_CHAT, NULL, "(tool calling) is not supported"},
    {"tool_choice", ON_CHAT, is_none, "(tool calling) is not supported"},
    {"parallel_tool_calls", ON_CHAT, NULL, "(tool calling) is not supported"},
    {"functions", ON_CHAT, NULL, "(function calling) is not supported"},
    {"function_call", ON_CHAT, NULL, "(function calling) is not supported"},
    {"audio", ON_CHAT, NULL, "(audio output) is not supported"},
    {"modalities", ON_CHAT, is_text_modality, "other than [\"text\"] is not supported"},
    {"prediction", ON_CHAT, NULL, "(predicted outputs) is not supported"},
    {"reasoning_effort", ON_CHAT, NULL, "is not supported: this model has no reasoning effort setting"},
    {"verbosity", ON_CHAT, NULL, "is not supported"},
    {"web_search_options", ON_CHAT, NULL, "(web search) is not supported"},
    {"store", ON_CHAT, is_false, "true is not supported: completions are not stored"},
    {"metadata", ON_CHAT, NULL, "is not supported: completions are not stored"},
    {"service_tier", ON_CHAT, is_default_tier, "other than \"auto\" or \"default\" is not supported"},
    {"user", ON_BOTH, is_string, "must be a string"},
    {"safety_identifier", ON_CHAT, is_string, "must be a string"},
    {"prompt_cache_key", ON_CHAT, is_string, "must be a string"},
    {"prompt_cache_retention", ON_CHAT, is_string, "must be a string"},
    /* defined only on the other endpoint: the client expects an effect it would not get */
    {"echo", ON_COMPLETIONS, NULL, NULL},
    {"prompt", ON_COMPLETIONS, NULL, NULL},
    {"messages", ON_CHAT, NULL, NULL},
    {"top_logprobs", ON_CHAT, NULL, NULL},
};

int api_check_fields(api_kind_t kind, const cJSON *root, api_error_t *e) {
    int here = kind == API_CHAT ? ON_CHAT : ON_COMPLETIONS;
    const char *endpoint = kind == API_CHAT ? "/v1/chat/completions" : "/v1/completions";
    for (size_t i = 0; i < sizeof RULES / sizeof RULES[0]; i++) {
        const field_rule_t *r = &RULES[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, r->name);
        if (!v || cJSON_IsNull(v)) continue;
        if (!(r->endpoints & here))
            return api_fail(e, 400, "invalid_request_error", r->name, "unsupported_parameter",
                            "'%s' is not a parameter of %s", r->name, endpoint);
        if (!r->why) continue;   /* implemented by api.c */
        if (!r->harmless || !r->harmless(v))
            return api_fail(e, 400, "invalid_request_error", r->name, "unsupported_parameter", "'%s' %s", r->name,
                            r->why);
    }
    return 0;
}
