/*
 * tests/failalloc.h - allocation-failure injection for the cmocka tests.
 *
 * Every test binary is linked with GNU ld's --wrap for the allocators that
 * libshm and the flusher call (Makefile, FAILALLOC_WRAP): malloc, calloc,
 * realloc, strdup, strndup, LZ4F_createCompressionContext,
 * LZ4F_createDecompressionContext and EVP_MD_CTX_new; jansson's allocations
 * go through it too (json_set_alloc_funcs, at start-up). Calls from the
 * objects linked into the binary (libshm.a, the flusher's objects, the
 * tests) are seen; allocations made inside the shared libraries (LMDB,
 * liblz4's frame buffers, libcrypto's digests, hiredis, libpq) are not.
 * The real allocator is the sanitizer's under SANITIZER=address.
 *
 * Armed per thread: only the arming thread's allocations fail, with NULL
 * (errno ENOMEM) or LZ4F's allocation_failed. Usage, to hit every
 * allocation point of a call once:
 *
 *   for (unsigned n = 1;; n++) {
 *           fa_fail_nth(n);
 *           rc = call();
 *           if (!fa_disarm())
 *                   break;     // no allocation failed: the call's result
 *           check rc and that nothing changed;
 *   }
 */
#ifndef SHM_FAILALLOC_H
#define SHM_FAILALLOC_H

/* The n-th allocation of this thread from now fails (n = 1: the next), and
 * only that one. */
void fa_fail_nth(unsigned n);
/* Every allocation of this thread fails until fa_disarm. */
void fa_fail_all(void);
/* Disarms; returns how many allocations failed since the thread armed. */
unsigned fa_disarm(void);

#endif
