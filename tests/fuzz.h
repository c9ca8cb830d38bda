/*
 * tests/fuzz.h - mutational fuzzing for the tests/test_fuzz_*.c files:
 * inputs, seeds, the changes a fuzzer makes, the checks every decoder's
 * refusal passes, and the sample messages seeds are made from (fuzz.c).
 *
 * Each target is a deterministic loop over mutations of valid inputs the
 * real code produced (the same inputs on every run of one seed). By hand:
 * SHM_FUZZ_ITERS=N runs N inputs per target instead of the suite's
 * default, SHM_FUZZ_SEED=S another sequence, SHM_FUZZ_ONLY=PATTERN only
 * the tests whose name matches (cmocka's filter, '*' a wildcard).
 */
#ifndef SHM_TEST_FUZZ_H
#define SHM_TEST_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm.h"

/* Reads SHM_FUZZ_*: first thing in a fuzz test's main. */
void fz_init(void);
/* The inputs a target runs: SHM_FUZZ_ITERS, else dflt. */
unsigned long fz_iters(unsigned long dflt);
/* The first state of a target's random sequence (SHM_FUZZ_SEED). */
uint64_t fz_seed(void);
/* xorshift64 */
uint64_t fz_rnd(uint64_t *s);
/* 0..n-1 (0 for n 0) */
size_t fz_below(uint64_t *s, size_t n);
double fz_now(void);
/* "fuzz <target>: N inputs, K accepted, T s" on stderr, since t0. */
void fz_report(const char *target, unsigned long n, unsigned long ok,
               double t0);

/* A byte string being mutated; p[n] is kept 0, so a text target reads it
 * as a C string (up to its first NUL, as the API would). */
typedef struct fz_input {
	uint8_t *p;
	size_t n, cap;
} fz_input;
void fz_set(fz_input *b, const void *p, size_t n);
void fz_insert(fz_input *b, size_t at, const void *p, size_t n);
/* b's bytes in a block of their size (and a NUL after them for a C
 * string; the caller frees it): a decoder reading past them is caught by
 * ASan, where b's own buffer has room to spare. */
uint8_t *fz_exact(const fz_input *b, bool cstr);

/* Valid inputs, mutated by fz_pick. */
typedef struct fz_seeds {
	fz_input *v;
	size_t n;
} fz_seeds;
void fz_seed_add(fz_seeds *s, const void *p, size_t n);
void fz_seeds_free(fz_seeds *s);

/* One change of b: a bit flipped, a byte set to a special value, a u32 (a
 * length) set to an extreme or near what follows it, b cut short, its
 * tail taken from o (a splice), a token inserted or written over (huge
 * numbers, invalid UTF-8 and overlong forms, JSON escapes, separators),
 * bytes deleted or repeated, deep nesting, a NUL; a JSON value replaced,
 * a JSON member added. */
void fz_mutate(fz_input *b, const fz_input *o, uint64_t *s);
/* b = a seed with 1 to 4 changes (one in 16 left whole); returns the
 * seed's index. */
size_t fz_pick(fz_input *b, const fz_seeds *sd, uint64_t *s);

/* An error text as libshm promises them: not empty, UTF-8, no control
 * byte (input is quoted printably: shm__shown). Fails the test else. */
void fz_printable(const char *where, const char *t);

/* Sample messages put accepts, with every field used, text with escapes,
 * controls and non-ASCII, content LZ4 would compress (fz_big_text), the
 * least one: message i has id FZ_IDS[i]. */
#define FZ_SAMPLES 5
extern const char *const FZ_IDS[FZ_SAMPLES];
extern char fz_big_text[3000]; /* whole characters, a C string */
shm_msg fz_sample(int i);
/* m's JSON (shm_msg_to_json), malloc'd; fails the test if refused. */
char *fz_to_json(const shm_msg *m, size_t *n);

#endif
