/*
 * tools/close_stdout.h - the tools' last step: stdout flushed and closed,
 * and a write that failed on the way (a full disk, a closed pipe's EPIPE
 * aside: SIGPIPE ends the tool first) said on stderr. Shared by shmctl
 * (tools/shmctl/), shm-chatsim, shm-dataset (each a single-file program)
 * and shm-bench.
 */
#ifndef SHM_TOOLS_CLOSE_STDOUT_H
#define SHM_TOOLS_CLOSE_STDOUT_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Exit code a tool returns when its output could not all be written. */
#define TOOL_EX_WRITE 70

/* "<prog>: write the output: <why>" on stderr; TOOL_EX_WRITE. */
static inline int tool_write_failed(const char *prog, int e)
{
	fprintf(stderr, "%s: write the output: %s\n", prog,
	        e ? strerror(e) : "write error");
	return TOOL_EX_WRITE;
}

/* ex, the tool's exit code, unless it is 0 and stdout could not all be
 * written: then tool_write_failed's. */
static inline int tool_close_stdout(const char *prog, int ex)
{
	errno = 0;
	bool bad = fflush(stdout) != 0 || ferror(stdout);
	int e = errno;

	if (fclose(stdout) != 0 && !bad) {
		bad = true;
		e = errno;
	}
	return bad && ex == 0 ? tool_write_failed(prog, e) : ex;
}

#endif
