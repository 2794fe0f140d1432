/* SPDX-License-Identifier: MIT */
/* Unit tests: configuration parsing, validation and drop-ins. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"

static const char base[] =
        "[signer]\nuri = file:/etc/provd/signer.key\ncert = /etc/provd/signer.pem\nroot = /etc/provd/root.pem\n"
        "[ports]\nglob = /dev/ttyACM* /tmp/boards/board-*\nusb_id = 03eb:2175 1366\n";

static void test_sample_file_is_valid(void **state) {
        char path[4096], err[512];
        struct conf c;

        snprintf(path, sizeof path, "%s/packaging/provd.conf", getenv("PROVD_SOURCE_DIR") ?: SOURCE_DIR);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), 0);
        assert_string_equal(c.name, "line-1");
        assert_int_equal(c.n_globs, 1);
        assert_string_equal(c.globs[0], "/dev/ttyACM*");
        assert_int_equal(c.baud, 115200);
        assert_true(c.validity_days == 0);
        assert_null(c.wifi_psk);
        conf_deinit(&c);
}

static void test_lists_and_values(void **state) {
        char err[512];
        struct conf c;

        conf_init(&c);
        assert_int_equal(conf_parse_string(&c, base, "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), 0);
        assert_int_equal(c.n_globs, 2);
        assert_string_equal(c.globs[1], "/tmp/boards/board-*");
        assert_int_equal(c.n_usb_ids, 2);
        assert_int_equal(c.usb_ids[0].vid, 0x03eb);
        assert_int_equal(c.usb_ids[0].pid, 0x2175);
        assert_int_equal(c.usb_ids[1].vid, 0x1366);
        assert_int_equal(c.usb_ids[1].pid, 0);
        /* An empty value clears a list, so a drop-in can replace it. */
        assert_int_equal(conf_parse_string(&c, "[ports]\nglob =\nglob = /dev/ttyUSB*\n", "t2", err, sizeof err), 0);
        assert_int_equal(c.n_globs, 1);
        assert_string_equal(c.globs[0], "/dev/ttyUSB*");
        conf_deinit(&c);
}

static void expect_error(const char *text, int error, const char *needle) {
        char err[512] = "";
        struct conf c;

        conf_init(&c);
        assert_int_equal(conf_parse_string(&c, text, "bad.conf", err, sizeof err), error);
        if (!strstr(err, needle))
                fail_msg("error '%s' does not mention '%s'", err, needle);
        conf_deinit(&c);
}

static void test_rejects(void **state) {
        expect_error("[station]\nmax_ports = 0\n", -ERANGE, "bad.conf:2");
        expect_error("[station]\nmax_ports = 12abc\n", -EINVAL, "max_ports");
        expect_error("[station]\nmax_ports = -1\n", -EINVAL, "max_ports");
        expect_error("[station]\nmax_ports = 99999999999999999999999\n", -EINVAL, "max_ports");
        expect_error("[station]\nno_such_key = 1\n", -EINVAL, "unknown key");
        expect_error("[nosection]\nx = 1\n", -EINVAL, "unknown key");
        expect_error("[ports]\nglob = relative/*\n", -EINVAL, "glob");
        expect_error("[ports]\nusb_id = 03eb:zzzz\n", -EINVAL, "usb_id");
        expect_error("[ports]\nusb_id = 0:1\n", -EINVAL, "usb_id");
        expect_error("[profile]\nthing_name = mac\n", -EINVAL, "thing_name");
        expect_error("[profile]\nreissue = maybe\n", -EINVAL, "reissue");
        expect_error("[station]\nlog_level = loud\n", -EINVAL, "log_level");
        expect_error("[station\n", -EINVAL, "syntax error");
        expect_error("[profile]\nformat = der\n", -EINVAL, "format");
        expect_error("[profile]\nexpiry = extend\n", -EINVAL, "expiry");
        expect_error("[profile]\ntemplate_id = 16\n", -ERANGE, "template_id");
        expect_error("[profile]\nsigner_id = 65536\n", -ERANGE, "signer_id");
        expect_error("[signer]\npin_credential = ../pin\n", -EINVAL, "pin_credential");
}

/* The signer-custody and compressed-profile keys. */
static void test_profile_signer_keys(void **state) {
        char err[512];
        struct conf c;

        conf_init(&c);
        assert_int_equal(conf_parse_string(&c, base, "t", err, sizeof err), 0);
        assert_int_equal(c.format, CERT_FORMAT_MODE_X509);
        assert_int_equal(c.expiry, CERT_EXPIRY_MODE_CLAMP);
        assert_int_equal(conf_parse_string(&c, "[profile]\nformat = atecc-compressed\nexpiry = refuse\n"
                                               "signer_id = 50463\ntemplate_id = 2\nchain_id = 15\n"
                                               "[signer]\npin_credential = hsm-pin\n",
                                           "t", err, sizeof err),
                         0);
        assert_int_equal(c.format, CERT_FORMAT_MODE_ATECC);
        assert_int_equal(c.expiry, CERT_EXPIRY_MODE_REFUSE);
        assert_int_equal(c.atecc_signer_id, 50463);
        assert_int_equal(c.atecc_template_id, 2);
        assert_int_equal(c.atecc_chain_id, 15);
        assert_string_equal(c.signer_pin_credential, "hsm-pin");
        assert_int_equal(conf_validate(&c, err, sizeof err), 0);
        assert_int_equal(conf_parse_string(&c, "[signer]\npin_file = /etc/provd/pin\n", "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "exclusive"));
        conf_deinit(&c);

        conf_init(&c);
        assert_int_equal(conf_parse_string(&c, base, "t", err, sizeof err), 0);
        assert_int_equal(conf_parse_string(&c, "[signer]\nuri = pkcs11:token=a;object=b?pin-value=1234\n", "t", err,
                                           sizeof err),
                         0);
        assert_int_equal(conf_validate(&c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "pin_file"));
        conf_deinit(&c);
}

static void test_validate(void **state) {
        char err[512];
        struct conf c;

        conf_init(&c);
        assert_int_equal(conf_parse_string(&c, "[ports]\nglob=/dev/x*\n", "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "[signer]"));
        assert_int_equal(conf_parse_string(&c, base, "t", err, sizeof err), 0);
        assert_int_equal(conf_parse_string(&c, "[board]\nwifi_psk = x\n", "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "wifi_ssid"));
        conf_deinit(&c);

        /* From a valid conf, only the signer URI scheme is wrong. */
        conf_init(&c);
        assert_int_equal(conf_parse_string(&c, base, "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), 0);
        assert_int_equal(conf_parse_string(&c, "[signer]\nuri = http://x\n", "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), -EINVAL);
        if (!strstr(err, "uri must start with file: or pkcs11:"))
                fail_msg("error '%s' does not name the uri scheme", err);
        conf_deinit(&c);

        /* A baud rate the ports cannot be set to is refused here, not on every port open. */
        conf_init(&c);
        assert_int_equal(conf_parse_string(&c, base, "t", err, sizeof err), 0);
        assert_int_equal(conf_parse_string(&c, "[ports]\nbaud = 100000\n", "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "baud 100000"));
        assert_int_equal(conf_parse_string(&c, "[ports]\nbaud = 921600\n", "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), 0);
        conf_deinit(&c);
}

/* PROTOCOL.md §8.3's per-request timeouts: new keys, unset by default (response_ms, then the table, stands in). */
static void test_timeouts(void **state) {
        struct conf c;
        char err[256];

        conf_init(&c);
        assert_int_equal(c.hello_ms, 0);
        assert_int_equal(c.request_ms, 0);
        assert_int_equal(c.write_ms, 0);
        assert_int_equal(c.result_ms, 0);
        assert_int_equal(c.response_ms, 0);
        assert_int_equal(c.keygen_ms, 3000);
        assert_int_equal(conf_parse_string(&c, base, "t", err, sizeof err), 0);
        assert_int_equal(conf_parse_string(&c, "[timeouts]\nhello_ms = 250\nrequest_ms = 900\nwrite_ms = 1800\n"
                                               "result_ms = 400\nresponse_ms = 700\n", "t", err, sizeof err), 0);
        assert_int_equal(c.hello_ms, 250);
        assert_int_equal(c.request_ms, 900);
        assert_int_equal(c.write_ms, 1800);
        assert_int_equal(c.result_ms, 400);
        assert_int_equal(c.response_ms, 700);
        assert_int_equal(conf_validate(&c, err, sizeof err), 0);
        assert_int_equal(conf_parse_string(&c, "[timeouts]\nrequest_ms = 4000\n", "t", err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "keygen_ms must be at least"));
        assert_true(conf_parse_string(&c, "[timeouts]\nwrite_ms = 5\n", "t", err, sizeof err) < 0);
        conf_deinit(&c);
}

static void test_dropins_and_slots(void **state) {
        char dir[] = "/tmp/provd-test-conf-XXXXXX", path[512], d[600], err[512];
        struct conf c;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/provd.conf", dir);
        f = fopen(path, "we");
        fputs(base, f);
        fputs("[slots]\n/dev/ttyACM0 = A1\n1-1.4 = B2\n", f);
        fclose(f);
        snprintf(d, sizeof d, "%s.d", path);
        assert_int_equal(mkdir(d, 0755), 0);
        snprintf(d, sizeof d, "%s.d/50-line.conf", path);
        f = fopen(d, "we");
        fputs("[station]\nname = line-7\n[slots]\n/dev/ttyACM0 = A9\n", f);
        fclose(f);

        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), 0);
        assert_string_equal(c.name, "line-7");
        assert_string_equal(conf_slot_label(&c, "/dev/ttyACM0", NULL), "A9");
        assert_string_equal(conf_slot_label(&c, "/dev/ttyACM3", "1-1.4"), "B2");
        assert_string_equal(conf_slot_label(&c, "/dev/ttyACM5", "1-1.5"), "ttyACM5");
        conf_deinit(&c);

        /* A broken drop-in makes the whole load fail, naming the file. */
        f = fopen(d, "we");
        fputs("[station]\nmax_frame = 10\n", f);
        fclose(f);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -ERANGE);
        assert_non_null(strstr(err, "50-line.conf:2"));
        conf_deinit(&c);

        unlink(d);
        snprintf(d, sizeof d, "%s.d", path);
        rmdir(d);
        unlink(path);
        rmdir(dir);
}

static void write_file(const char *path, const char *text, mode_t mode) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        assert_int_equal(chmod(path, mode), 0);
}

/* The PIN never in the URI; the PSK never in a file the provd group reads. */
static void test_secrets(void **state) {
        char dir[] = "/tmp/provd-test-conf-XXXXXX", path[512], psk[512], text[1024], err[512];
        struct conf c;

        conf_init(&c);
        assert_int_equal(conf_parse_string(&c, base, "t", err, sizeof err), 0);
        assert_int_equal(conf_parse_string(&c, "[signer]\nuri = pkcs11:token=a;object=b?PIN-Value=73916\n", "t",
                                           err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "pin_file"));
        assert_null(strstr(err, "73916"));
        assert_int_equal(conf_parse_string(&c, "[signer]\nuri = pkcs11:token=a?pin%2dvalue=73916\n", "t",
                                           err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), -EINVAL);
        assert_int_equal(conf_parse_string(&c, "[signer]\nuri = pkcs11:token=a?pin-source=/etc/provd/pin\n", "t",
                                           err, sizeof err), 0);
        assert_int_equal(conf_validate(&c, err, sizeof err), 0);
        conf_deinit(&c);

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/provd.conf", dir);
        snprintf(psk, sizeof psk, "%s/wifi.psk", dir);
        snprintf(text, sizeof text, "%s[board]\nwifi_ssid = f\nwifi_psk = inline-secret\n", base);
        write_file(path, text, 0640);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -EPERM);
        assert_non_null(strstr(err, "wifi_psk_file"));
        assert_null(strstr(err, "inline-secret"));
        conf_deinit(&c);
        assert_int_equal(chmod(path, 0600), 0);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), 0);
        assert_string_equal(c.wifi_psk, "inline-secret");
        conf_deinit(&c);

        snprintf(text, sizeof text, "%s[board]\nwifi_ssid = f\nwifi_psk_file = %s\n", base, psk);
        write_file(path, text, 0644);
        write_file(psk, "from-file-secret\nsecond line\n", 0644);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -EPERM);
        assert_non_null(strstr(err, "chmod 600"));
        conf_deinit(&c);
        assert_int_equal(chmod(psk, 0600), 0);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), 0);
        assert_string_equal(c.wifi_psk, "from-file-secret");
        conf_deinit(&c);
        unlink(psk);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -ENOENT);
        conf_deinit(&c);

        /* credential:NAME is $CREDENTIALS_DIRECTORY/NAME. */
        snprintf(text, sizeof text, "%s[board]\nwifi_ssid = f\nwifi_psk_file = credential:wifi.psk\n", base);
        write_file(path, text, 0644);
        write_file(psk, "cred-secret\n", 0400);
        setenv("CREDENTIALS_DIRECTORY", dir, 1);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), 0);
        assert_string_equal(c.wifi_psk, "cred-secret");
        conf_deinit(&c);
        unsetenv("CREDENTIALS_DIRECTORY");
        conf_init(&c);
        assert_true(conf_load(&c, path, err, sizeof err) < 0);
        assert_non_null(strstr(err, "CREDENTIALS_DIRECTORY"));
        conf_deinit(&c);

        unlink(psk);
        unlink(path);
        rmdir(dir);
}

static void test_allowlist(void **state) {
        char dir[] = "/tmp/provd-test-conf-XXXXXX", path[512], list[512], text[1024], err[512];
        struct conf c;

        assert_non_null(mkdtemp(dir));
        snprintf(path, sizeof path, "%s/provd.conf", dir);
        snprintf(list, sizeof list, "%s/serials", dir);
        snprintf(text, sizeof text, "%s[profile]\nserial_allowlist = %s\n", base, list);
        write_file(path, text, 0644);
        write_file(list, "# vendor manifest\n0123ABCDEF01EE\n\n  0123abcdef02ee   # second\n0123abcdef03ee\r\n", 0644);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), 0);
        assert_int_equal(c.n_allowed_serials, 3);
        assert_true(conf_serial_allowed(&c, "0123abcdef01ee"));
        assert_true(conf_serial_allowed(&c, "0123ABCDEF02EE"));
        assert_true(conf_serial_allowed(&c, "0123abcdef03ee"));
        assert_false(conf_serial_allowed(&c, "0123abcdef04ee"));
        assert_false(conf_serial_allowed(&c, ""));
        conf_deinit(&c);

        write_file(list, "0123abcdef01ee\nnot-hex\n", 0644);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "serials:2"));
        conf_deinit(&c);
        write_file(list, "0123abcdef01ee extra\n", 0644);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -EINVAL);
        conf_deinit(&c);
        write_file(list, "0123abcdef01ee\n", 0664);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -EPERM);
        conf_deinit(&c);

        /* Microchip's manifest: the serials of its elements' header.uniqueId. */
        write_file(list, " [{\"payload\": \"x\", \"protected\": \"y\", \"header\": {\"uniqueId\": \"0123ABCDEF05EE\"},"
                   " \"signature\": \"z\"}, {\"header\": {\"uniqueId\": \"0123abcdef06ee\"}}]\n", 0644);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), 0);
        assert_int_equal(c.n_allowed_serials, 2);
        assert_true(conf_serial_allowed(&c, "0123ABCDEF05EE"));
        assert_true(conf_serial_allowed(&c, "0123abcdef06ee"));
        assert_false(conf_serial_allowed(&c, "0123abcdef01ee"));
        conf_deinit(&c);
        write_file(list, "[{\"header\": {\"uniqueId\": \"0123abcdef06ee\"}}, {\"header\": {}}]", 0644);
        conf_init(&c);
        assert_int_equal(conf_load(&c, path, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "element 1"));
        conf_deinit(&c);

        /* No list: every serial. */
        conf_init(&c);
        assert_true(conf_serial_allowed(&c, "00"));
        assert_int_equal(c.max_certs_per_hour, 50000);
        assert_int_equal(c.max_certs_per_port_per_minute, 60);
        conf_deinit(&c);

        unlink(list);
        unlink(path);
        rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sample_file_is_valid),
                cmocka_unit_test(test_lists_and_values),
                cmocka_unit_test(test_rejects),
                cmocka_unit_test(test_validate),
                cmocka_unit_test(test_profile_signer_keys),
                cmocka_unit_test(test_timeouts),
                cmocka_unit_test(test_dropins_and_slots),
                cmocka_unit_test(test_secrets),
                cmocka_unit_test(test_allowlist),
        };
        log_set_max_level(LOG_ERR);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
