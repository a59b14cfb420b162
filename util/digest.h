/* SHA-256 and MD5 of a buffer, from libcrypto loaded on first use. */
#pragma once
#include <stddef.h>

/* 0, or -ENOSYS (with a message) if libcrypto cannot be loaded. */
int digest_sha256(const void *data, size_t len, unsigned char out[32]);
int digest_md5(const void *data, size_t len, unsigned char out[16]);
