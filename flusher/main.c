/*
 * flusher/main.c - shm-flusher's entry point. Everything else in flusher/
 * is linked into the tests and shm-bench as well: see loop.c (fl_main).
 */
#include "fl.h"

int main(int argc, char **argv)
{
	return fl_main(argc, argv);
}
