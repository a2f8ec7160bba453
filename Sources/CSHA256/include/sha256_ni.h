// SHA-256 block compression with the x86 SHA extensions (SHA-NI), for the
// audit chain's per-record hashes (Sources/AllocationEngine/Core/SHA256.swift
// keeps the padding and the portable fallback). Our own code, no library.
#ifndef AE_SHA256_NI_H
#define AE_SHA256_NI_H

#include <stddef.h>
#include <stdint.h>

// 1 when this CPU has the SHA extensions (and SSSE3 and SSE4.1, which the
// routine also uses), else 0 (and always 0 off x86-64).
int ae_sha256_ni_available(void);

// Compresses `blocks` 64-byte blocks at `data` into `state` (a, b, ..., h).
// Only call when ae_sha256_ni_available() returned 1.
void ae_sha256_ni_blocks(uint32_t state[8], const uint8_t *data, size_t blocks);

#endif
