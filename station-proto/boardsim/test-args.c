/* SPDX-License-Identifier: MIT */
/* Unit tests: provd-boardsim command line, fault specs and control lines. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "station-proto/sp-wire.h"

#include "args.h"

static void test_fault_kinds(void **state) {
        struct fault_spec f;

        assert_int_equal(fault_spec_parse("badsig", &f), 0);
        assert_int_equal(f.kind, FAULT_BADSIG);
        assert_true(f.all);
        assert_int_equal(fault_spec_parse("cn", &f), 0);
        assert_int_equal(f.kind, FAULT_CN);
        assert_int_equal(fault_spec_parse("ca", &f), 0);
        assert_int_equal(f.kind, FAULT_CA);
        assert_int_equal(fault_spec_parse("silent", &f), 0);
        assert_int_equal(f.kind, FAULT_SILENT);
        assert_int_equal(fault_spec_parse("oversize", &f), 0);
        assert_int_equal(f.kind, FAULT_OVERSIZE);

        assert_int_equal(fault_spec_parse("corrupt:0.01", &f), 0);
        assert_int_equal(f.kind, FAULT_CORRUPT);
        assert_true(f.rate > 0.0099 && f.rate < 0.0101);
        assert_int_equal(fault_spec_parse("corrupt:1", &f), 0);
        assert_true(f.rate == 1.0);

        assert_int_equal(fault_spec_parse("drop:hello", &f), 0);
        assert_int_equal(f.step, SP_MSG_HELLO);
        assert_int_equal(fault_spec_parse("drop:csr", &f), 0);
        assert_int_equal(f.step, SP_MSG_GET_CSR);
        assert_int_equal(fault_spec_parse("drop:cert", &f), 0);
        assert_int_equal(f.step, SP_MSG_PUT_CERT);
        assert_int_equal(fault_spec_parse("drop:config", &f), 0);
        assert_int_equal(f.step, SP_MSG_PUT_CONFIG);
        assert_int_equal(fault_spec_parse("drop:prove", &f), 0);
        assert_int_equal(f.step, SP_MSG_PROVE);

        assert_int_equal(fault_spec_parse("clone:3@5", &f), 0);
        assert_int_equal(f.kind, FAULT_CLONE);
        assert_int_equal(f.arg, 3);

        assert_int_equal(fault_spec_parse("garbage", &f), 0);
        assert_int_equal(f.arg, FAULT_GARBAGE_DEFAULT);
        assert_int_equal(fault_spec_parse("garbage:100", &f), 0);
        assert_int_equal(f.arg, 100);

        assert_int_equal(fault_spec_parse("boottext", &f), 0);
        assert_int_equal(f.kind, FAULT_BOOTTEXT);
        assert_int_equal(f.arg, FAULT_BOOTTEXT_DEFAULT);
        assert_int_equal(fault_spec_parse("boottext:20000@1", &f), 0);
        assert_int_equal(f.arg, 20000);
        assert_int_equal(fault_spec_parse("boottext:0", &f), -ERANGE);
        assert_true(fault_spec_parse("boottext:24577", &f) < 0);
        assert_int_equal(fault_spec_parse("resultbad:type", &f), 0);
        assert_int_equal(f.kind, FAULT_RESULTBAD);
        assert_int_equal(f.arg, RESULTBAD_TYPE);
        assert_int_equal(fault_spec_parse("resultbad:version", &f), 0);
        assert_int_equal(f.arg, RESULTBAD_VERSION);
        assert_int_equal(fault_spec_parse("resultbad:error@0-3", &f), 0);
        assert_int_equal(f.arg, RESULTBAD_ERROR);
        assert_int_equal(fault_spec_parse("resultbad", &f), -EINVAL);
        assert_int_equal(fault_spec_parse("resultbad:ok", &f), -EINVAL);
        assert_int_equal(fault_spec_parse("nocerthash", &f), 0);
        assert_int_equal(f.kind, FAULT_NOCERTHASH);
        assert_int_equal(fault_spec_parse("nocerthash:1", &f), -EINVAL);
        assert_int_equal(fault_spec_parse("vendorerr", &f), 0);
        assert_int_equal(f.kind, FAULT_VENDORERR);
        assert_int_equal(fault_spec_parse("locked@2", &f), 0);
        assert_int_equal(f.kind, FAULT_LOCKED);
        assert_int_equal(fault_spec_parse("pubkeymismatch", &f), 0);
        assert_int_equal(f.kind, FAULT_PUBKEYMISMATCH);

        assert_string_equal(fault_kind_to_string(FAULT_GARBAGE), "garbage");
        assert_string_equal(fault_kind_to_string(FAULT_PUBKEYMISMATCH), "pubkeymismatch");
        assert_null(fault_kind_to_string(_FAULT_KIND_MAX));
}

static void test_fault_boards(void **state) {
        struct fault_spec f;

        assert_int_equal(fault_spec_parse("badsig@3", &f), 0);
        assert_false(f.all);
        assert_false(f.is_fraction);
        assert_int_equal(f.n_ranges, 1);
        assert_true(fault_spec_has_index(&f, 3));
        assert_false(fault_spec_has_index(&f, 2));
        assert_false(fault_spec_has_index(&f, 4));

        assert_int_equal(fault_spec_parse("silent@0-7,12", &f), 0);
        assert_int_equal(f.n_ranges, 2);
        for (uint32_t i = 0; i <= 7; i++)
                assert_true(fault_spec_has_index(&f, i));
        assert_false(fault_spec_has_index(&f, 8));
        assert_true(fault_spec_has_index(&f, 12));
        assert_false(fault_spec_has_index(&f, 13));

        assert_int_equal(fault_spec_parse("corrupt:0.5@0.1", &f), 0);
        assert_true(f.is_fraction);
        assert_true(f.fraction > 0.0999 && f.fraction < 0.1001);
        assert_false(fault_spec_has_index(&f, 0));      /* fractions are decided with the seed */
        assert_true(f.rate == 0.5);

        assert_int_equal(fault_spec_parse("ca@1.0", &f), 0);
        assert_true(f.is_fraction);
        assert_true(f.fraction == 1.0);

        assert_int_equal(fault_spec_parse("badsig", &f), 0);
        assert_true(fault_spec_has_index(&f, 4095));
}

static void test_fault_errors(void **state) {
        struct fault_spec f = { .arg = 77 };
        static const char *const bad[] = {
                "", "nope", "badsig:1", "silent:", "corrupt", "corrupt:", "corrupt:0", "corrupt:1.5",
                "corrupt:-1", "corrupt:x", "corrupt:1e-3", "corrupt:0..1", "drop", "drop:lunch", "drop:CSR",
                "clone", "clone:x@1", "clone:4096@1", "garbage:0", "garbage:99999", "badsig@", "badsig@x",
                "badsig@1,", "badsig@,1", "badsig@7-3", "badsig@1-", "badsig@-1", "badsig@4096", "badsig@1.5",
                "badsig@0.1.2", "badsig@1@2", "badsig@0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
                "ca@99999999999", " badsig", "badsig ",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int r = fault_spec_parse(bad[i], &f);
                if (r != -EINVAL && r != -ERANGE)
                        fail_msg("'%s' parsed (%d)", bad[i], r);
        }
        assert_int_equal(f.arg, 77);            /* not written on failure */
        assert_int_equal(fault_spec_parse(NULL, &f), -EINVAL);
}

static void test_numbers(void **state) {
        uint32_t u;
        double d;

        assert_int_equal(parse_u32("0", 1, 10, &u), 0);
        assert_int_equal(u, 0);
        assert_int_equal(parse_u32("4294967295", 10, UINT32_MAX, &u), 0);
        assert_int_equal(u, UINT32_MAX);
        assert_int_equal(parse_u32("4294967296", 10, UINT32_MAX, &u), -ERANGE);
        assert_int_equal(parse_u32("11", 2, 10, &u), -ERANGE);
        assert_int_equal(parse_u32("+1", 2, 10, &u), -EINVAL);
        assert_int_equal(parse_u32("", 0, 10, &u), -EINVAL);
        assert_int_equal(parse_u32("12345678901", 11, UINT32_MAX, &u), -ERANGE);

        assert_int_equal(parse_decimal("0.25", 4, 1, &d), 0);
        assert_true(d == 0.25);
        assert_int_equal(parse_decimal(".5", 2, 1, &d), 0);
        assert_true(d == 0.5);
        assert_int_equal(parse_decimal("1.", 2, 1, &d), 0);
        assert_true(d == 1.0);
        assert_int_equal(parse_decimal(".", 1, 1, &d), -EINVAL);
        assert_int_equal(parse_decimal("1.01", 4, 1, &d), -ERANGE);
        assert_int_equal(parse_decimal("0.1234567890123456", 18, 1, &d), -ERANGE);
        assert_int_equal(parse_decimal("nan", 3, 1, &d), -EINVAL);
}

static int parse_argv(struct sim_options *o, const char *const *args) {
        char *argv[64];
        char err[256];
        int argc = 0;

        argv[argc++] = (char *)"provd-boardsim";
        while (*args)
                argv[argc++] = (char *)*args++;
        return sim_options_parse(argc, argv, o, err, sizeof(err));
}

static void test_options(void **state) {
        struct sim_options o;

        assert_int_equal(parse_argv(&o, (const char *const[]){ "--count", "8", "--dir", "/tmp/x", NULL }), 0);
        assert_int_equal(o.count, 8);
        assert_string_equal(o.dir, "/tmp/x");
        assert_null(o.state_dir);
        assert_null(o.seed);
        assert_int_equal(o.n_faults, 0);

        assert_int_equal(parse_argv(&o, (const char *const[]){ "--dir=d", "--count=256", "--seed=abc", "--state-dir", "s",
                                                               "--wire-baud", "115200", "--genkey-ms=100",
                                                               "--fault", "badsig@3", "--fault=silent@0.1",
                                                               "--cycles", "78", "--total", "20000",
                                                               "--exit-when-done", "--verbose", NULL }),
                         0);
        assert_int_equal(o.count, 256);
        assert_string_equal(o.seed, "abc");
        assert_string_equal(o.state_dir, "s");
        assert_int_equal(o.wire_baud, 115200);
        assert_int_equal(o.genkey_ms, 100);
        assert_int_equal(o.n_faults, 2);
        assert_int_equal(o.faults[0].kind, FAULT_BADSIG);
        assert_int_equal(o.faults[1].kind, FAULT_SILENT);
        assert_int_equal(o.cycles, 78);
        assert_int_equal(o.total, 20000);
        assert_true(o.exit_when_done);
        assert_true(o.verbose);

        assert_int_equal(parse_argv(&o, (const char *const[]){ "--help", NULL }), 0);
        assert_true(o.help);
        assert_int_equal(parse_argv(&o, (const char *const[]){ "--version", NULL }), 0);
        assert_true(o.version);
}

static void test_option_errors(void **state) {
        const char *const *const bad[] = {
                (const char *const[]){ "--count", "8", NULL },                  /* no --dir */
                (const char *const[]){ "--dir", NULL },
                (const char *const[]){ "--dir", "d", "--count", "4097", NULL },
                (const char *const[]){ "--dir", "d", "--count", "-1", NULL },
                (const char *const[]){ "--dir", "d", "--bogus", NULL },
                (const char *const[]){ "--dir", "d", "extra", NULL },
                (const char *const[]){ "--dir", "d", "--verbose=1", NULL },
                (const char *const[]){ "--dir", "d", "--wire-baud", "10", NULL },
                (const char *const[]){ "--dir", "d", "--genkey-ms", "60001", NULL },
                (const char *const[]){ "--dir", "d", "--cycles", "0", NULL },
                (const char *const[]){ "--dir", "d", "--exit-when-done", NULL },
                (const char *const[]){ "--dir", "d", "--fault", "clone:1", NULL },
                (const char *const[]){ "--dir", "d", "--fault", "nope", NULL },
                (const char *const[]){ "--dir", "", NULL },
                (const char *const[]){ "-x", NULL },
        };
        struct sim_options o;
        char err[256];
        char *argv[] = { (char *)"x", (char *)"--dir", (char *)"d", (char *)"--fault", (char *)"ca" };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (parse_argv(&o, bad[i]) != -EINVAL)
                        fail_msg("bad command line %zu accepted", i);

        /* More than SIM_MAX_FAULTS faults. */
        {
                const char *args[2 + 2 * (SIM_MAX_FAULTS + 1) + 1];
                size_t n = 0;
                args[n++] = "--dir";
                args[n++] = "d";
                for (unsigned i = 0; i <= SIM_MAX_FAULTS; i++) {
                        args[n++] = "--fault";
                        args[n++] = "ca";
                }
                args[n] = NULL;
                assert_int_equal(parse_argv(&o, args), -EINVAL);
        }

        /* The message names the problem. */
        assert_int_equal(sim_options_parse(4, argv, &o, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "--fault"));
}

static void test_control(void **state) {
        struct control_req r;

        assert_int_equal(control_parse("add", 3, &r), 0);
        assert_int_equal(r.cmd, CONTROL_ADD);
        assert_int_equal(r.arg, 1);
        assert_int_equal(control_parse("add 16", 6, &r), 0);
        assert_int_equal(r.arg, 16);
        assert_int_equal(control_parse("remove 3", 8, &r), 0);
        assert_int_equal(r.cmd, CONTROL_REMOVE);
        assert_int_equal(r.arg, 3);
        assert_int_equal(control_parse("  replug\t7 \r", 12, &r), 0);
        assert_int_equal(r.cmd, CONTROL_REPLUG);
        assert_int_equal(r.arg, 7);
        assert_int_equal(control_parse("swap 0", 6, &r), 0);
        assert_int_equal(r.cmd, CONTROL_SWAP);
        assert_int_equal(r.arg, 0);
        assert_int_equal(control_parse("status", 6, &r), 0);
        assert_int_equal(r.cmd, CONTROL_STATUS);
        assert_int_equal(control_parse("quit", 4, &r), 0);
        assert_int_equal(r.cmd, CONTROL_QUIT);
        /* Length is explicit: what follows is not part of the line. */
        assert_int_equal(control_parse("quitXYZ", 4, &r), 0);
}

static void test_control_errors(void **state) {
        static const char *const bad[] = {
                "", "add 0", "add 4097", "add x", "remove", "remove x", "remove -1", "remove 4096", "replug",
                "swap", "quit now", "status 1", "add 1 2", "ADD 1", "adds", "q", "remove 1 ",
        };
        struct control_req r = { .arg = 99 };
        char long_line[CONTROL_LINE_MAX + 2];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                int k = control_parse(bad[i], strlen(bad[i]), &r);
                /* "remove 1 " is fine: trailing blanks are trimmed. */
                if (strcmp(bad[i], "remove 1 ") == 0) {
                        assert_int_equal(k, 0);
                        r.arg = 99;
                        continue;
                }
                if (k != -EINVAL && k != -ERANGE)
                        fail_msg("control line '%s' accepted", bad[i]);
        }
        assert_int_equal(r.arg, 99);
        memset(long_line, 'a', sizeof(long_line));
        assert_int_equal(control_parse(long_line, sizeof(long_line), &r), -EINVAL);
        assert_int_equal(control_parse(NULL, 0, &r), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fault_kinds),
                cmocka_unit_test(test_fault_boards),
                cmocka_unit_test(test_fault_errors),
                cmocka_unit_test(test_numbers),
                cmocka_unit_test(test_options),
                cmocka_unit_test(test_option_errors),
                cmocka_unit_test(test_control),
                cmocka_unit_test(test_control_errors),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
