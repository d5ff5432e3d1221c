/* SPDX-License-Identifier: MIT */
/*
 * The host stress drivers' printed total: every error once. A stress error
 * is counted and also reported through the port (stress_fail), so the
 * verdict must add only the reports the library made itself; each of
 * those is one more error. Here: three stress errors and two reports of
 * the library's own, without a planted fault, must print "errors 5" and
 * fail; none of either must print "errors 0" and pass.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cairn/error.h>
#include <cairn/port.h>

#include "check.h"
#include "stress_host.h"

/* The verdict's exit code, and the total it printed (-1: none found). */
static int verdict(const struct stress_args *a, uint64_t errors, long long *printed)
{
	FILE *tmp = tmpfile();
	REQUIRE(tmp);
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	REQUIRE(saved >= 0 && dup2(fileno(tmp), STDOUT_FILENO) >= 0);
	int rc = stress_verdict(a, errors);
	fflush(stdout);
	REQUIRE(dup2(saved, STDOUT_FILENO) >= 0);
	close(saved);
	rewind(tmp);
	char line[256];
	*printed = -1;
	while (fgets(line, sizeof(line), tmp)) {
		const char *e = strstr(line, "errors ");
		if (e)
			*printed = strtoll(e + 7, NULL, 10);
	}
	fclose(tmp);
	return rc;
}

int main(void)
{
	struct stress_args a = { .threads = 1, .plant = STRESS_PLANT_NONE };
	struct stress_blocks b;
	long long printed;

	cairn_host_reports_quiet(1);
	stress_blocks_init(&b);
	CHECK_EQ(verdict(&a, atomic_load(&b.errors), &printed), 0);
	CHECK_EQ(printed, 0);

	for (unsigned i = 0; i < 3; i++)
		stress_fail(&b, CAIRN_ECORRUPT, "stress: planted by stress_count", i, 0);
	for (unsigned i = 0; i < 2; i++)
		cairn_port_report(CAIRN_EINVAL, "a report of the library's own", i, 0);
	CHECK_EQ(atomic_load(&b.errors), 3);
	CHECK_EQ(verdict(&a, atomic_load(&b.errors), &printed), 1);
	CHECK_EQ(printed, 5);
	return check_done("stress_count");
}
