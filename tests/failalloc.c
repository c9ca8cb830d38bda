/* tests/failalloc.c - allocation-failure injection (see failalloc.h). */
#include <errno.h>
#include <jansson.h>
#define LZ4F_STATIC_LINKING_ONLY /* the error codes */
#include <lz4frame.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "failalloc.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
LZ4F_errorCode_t __real_LZ4F_createCompressionContext(LZ4F_cctx **c,
                                                      unsigned v);
LZ4F_errorCode_t __real_LZ4F_createDecompressionContext(LZ4F_dctx **d,
                                                        unsigned v);
EVP_MD_CTX *__real_EVP_MD_CTX_new(void);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
LZ4F_errorCode_t __wrap_LZ4F_createCompressionContext(LZ4F_cctx **c,
                                                      unsigned v);
LZ4F_errorCode_t __wrap_LZ4F_createDecompressionContext(LZ4F_dctx **d,
                                                        unsigned v);
EVP_MD_CTX *__wrap_EVP_MD_CTX_new(void);

/* countdown 0 and !all: disarmed */
static _Thread_local unsigned countdown, failed;
static _Thread_local bool all;

void fa_fail_nth(unsigned n)
{
	countdown = n;
	all = false;
	failed = 0;
}

void fa_fail_all(void)
{
	countdown = 0;
	all = true;
	failed = 0;
}

unsigned fa_disarm(void)
{
	unsigned f = failed;

	countdown = 0;
	all = false;
	failed = 0;
	return f;
}

/* Whether this allocation fails (ENOMEM in errno then). */
static bool fail_now(void)
{
	if (!all && (!countdown || --countdown))
		return false;
	failed++;
	errno = ENOMEM;
	return true;
}

void *__wrap_malloc(size_t n)
{
	return fail_now() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fail_now() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return fail_now() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return fail_now() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
	return fail_now() ? NULL : __real_strndup(s, n);
}

LZ4F_errorCode_t __wrap_LZ4F_createCompressionContext(LZ4F_cctx **c,
                                                      unsigned v)
{
	if (fail_now()) {
		*c = NULL;
		return (LZ4F_errorCode_t)-(ptrdiff_t)
			LZ4F_ERROR_allocation_failed;
	}
	return __real_LZ4F_createCompressionContext(c, v);
}

LZ4F_errorCode_t __wrap_LZ4F_createDecompressionContext(LZ4F_dctx **d,
                                                        unsigned v)
{
	if (fail_now()) {
		*d = NULL;
		return (LZ4F_errorCode_t)-(ptrdiff_t)
			LZ4F_ERROR_allocation_failed;
	}
	return __real_LZ4F_createDecompressionContext(d, v);
}

EVP_MD_CTX *__wrap_EVP_MD_CTX_new(void)
{
	return fail_now() ? NULL : __real_EVP_MD_CTX_new();
}

/* jansson's objects and texts, through the same counter (its free is the
 * real free: what it frees came from the real malloc) */
__attribute__((constructor)) static void fa_jansson(void)
{
	json_set_alloc_funcs(__wrap_malloc, free);
}
