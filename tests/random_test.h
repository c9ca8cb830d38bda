/*
 * tests/random_test.h - the seeded randomness of the randomized tests
 * (test_room_random.c, test_hosts_random.c): one generator, so a seed
 * printed by a failing run gives the same operations again.
 */
#ifndef SHM_RANDOM_TEST_H
#define SHM_RANDOM_TEST_H

#include <stdint.h>
#include <string.h>

#include "shm.h"

static uint64_t seed, rng; /* the run's seed; the generator's state */

/* xorshift64*: the same sequence for a seed on every libc */
static inline uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * UINT64_C(2685821657736338717);
}

static inline uint32_t below(uint32_t n)
{
	return (uint32_t)(rnd() % n);
}

/* A new message id: half UUIDv7 (libshm's own), half random v4, so that
 * a message put later can sort first among equal created_at. */
static inline shm_uuid new_id(void)
{
	shm_uuid u;

	if (below(2)) {
		shm_uuid_v7(&u);
		return u;
	}
	for (int i = 0; i < 16; i += 8) {
		uint64_t x = rnd();
		memcpy(u.b + i, &x, 8);
	}
	u.b[6] = (uint8_t)(0x40 | (u.b[6] & 0x0f));
	u.b[8] = (uint8_t)(0x80 | (u.b[8] & 0x3f));
	return u;
}

#endif
