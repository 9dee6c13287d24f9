/* file.h - reading a whole small file into memory (config.json,
 * tokenizer.json, the safetensors index, placement files): the one reader
 * every loader uses, with a size limit so a wrong path cannot exhaust memory. */
#ifndef SPEX_FILE_H
#define SPEX_FILE_H

#include <stddef.h>

#include "core/error.h"

/* The bytes of the file at path, NUL-terminated (*len of them before the NUL,
 * if len is not NULL), malloc'ed. Reads to the end, so pipes work too. NULL
 * with err when it cannot be opened or read, or holds more than max bytes;
 * the message does not name the file: callers prefix it with their context. */
char *spex_read_file(const char *path, size_t max, size_t *len, spex_err_t *err);

#endif
