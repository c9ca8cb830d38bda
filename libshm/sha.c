/*
 * libshm/sha.c - the SHAs stored with every static, through OpenSSL's EVP.
 *
 *  - SHM_SHA1_GIT: SHA-1 of "blob <len>\0" followed by the content, the
 *    object id `git hash-object` prints and GitHub compares.
 *  - SHM_SHA256: SHA-256 of the content alone (GitLab's file SHA).
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static void hex(const unsigned char *md, unsigned n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* out gets the hex digest, or "" if libcrypto failed (out of memory). */
void shm_sha_hex(shm_sha_kind kind, const void *content, size_t len,
                 char out[65])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char head[32];
	int hlen, ok = 0;
	EVP_MD_CTX *ctx;

	out[0] = '\0';
	if (len > 0 && content == NULL)
		return;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return;
	if (kind == SHM_SHA1_GIT) {
		/* the header includes its terminating NUL */
		hlen = snprintf(head, sizeof head, "blob %zu", len) + 1;
		ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) &&
		     EVP_DigestUpdate(ctx, head, (size_t)hlen) &&
		     EVP_DigestUpdate(ctx, content, len) &&
		     EVP_DigestFinal_ex(ctx, md, &mdlen);
	} else if (kind == SHM_SHA256) {
		ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
		     EVP_DigestUpdate(ctx, content, len) &&
		     EVP_DigestFinal_ex(ctx, md, &mdlen);
	}
	EVP_MD_CTX_free(ctx);
	if (ok)
		hex(md, mdlen, out);
}
