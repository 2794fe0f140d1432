/* SPDX-License-Identifier: MIT */
/* Fuzz target: AWS IoT response and error parsing (status, x-amzn-ErrorType, any body). */

/*
 * Input: byte 0 = operation, byte 1 = HTTP status (index into a table of the
 * statuses that matter), then the x-amzn-ErrorType value up to the first
 * '\n', then the body. Checks the invariants the step machines rely on.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aws-iot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const long statuses[] = { 200, 204, 400, 403, 404, 409, 429, 500, 503, 301, 100, 0 };

static void check_printable(const char *s, size_t max) {
        size_t n = strnlen(s, max + 1);
        if (n > max)
                abort();
        for (size_t i = 0; i < n; i++)
                if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
                        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct aws_response r;
        char hdr[300];
        const char *header = NULL;

        if (size < 2 || size > 1 << 20)
                return 0;
        enum aws_op op = (enum aws_op)(data[0] % AWS_OP_MAX);
        long status = statuses[data[1] % (sizeof statuses / sizeof *statuses)];
        data += 2, size -= 2;
        const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
        if (nl) {
                size_t n = (size_t)(nl - data);
                memcpy(hdr, data, n);
                hdr[n] = 0;
                header = hdr;
                size -= n + 1;
                data = nl + 1;
        }
        /* The body as aws-http.c delivers it: not NUL-terminated at @size. */
        char *body = malloc(size ? size : 1);
        if (!body)
                return 0;
        memcpy(body, data, size);
        if (aws_response_parse(op, status, header, size ? body : NULL, size, &r) != 0)
                abort();
        free(body);

        check_printable(r.code, AWS_CODE_MAX);
        check_printable(r.message, AWS_MESSAGE_MAX);
        if (r.cls == AWS_OK) {
                if (r.code[0] || status < 200 || status >= 300)
                        abort();
                /* What the step machines read is valid whenever the call succeeded. */
                switch (op) {
                case AWS_OP_REGISTER_CERTIFICATE_WITHOUT_CA:
                case AWS_OP_REGISTER_CERTIFICATE:
                case AWS_OP_REGISTER_CA_CERTIFICATE:
                        if (!aws_cert_id_valid(r.certificate_id) || !aws_arn_valid(r.certificate_arn))
                                abort();
                        break;
                case AWS_OP_DESCRIBE_CERTIFICATE:
                case AWS_OP_DESCRIBE_CA_CERTIFICATE:
                        if (!aws_cert_id_valid(r.certificate_id) || !aws_arn_valid(r.certificate_arn) ||
                            !r.certificate_status[0])
                                abort();
                        break;
                case AWS_OP_GET_REGISTRATION_CODE:
                        if (!r.registration_code[0])
                                abort();
                        check_printable(r.registration_code, AWS_REG_CODE_MAX);
                        break;
                default:
                        break;
                }
                if (r.n_policies > AWS_LIST_MAX)
                        abort();
        } else if (status >= 200 && status < 300 && r.cls != AWS_RETRY)
                abort();
        else if ((status == 429 || status >= 500) && r.cls != AWS_RETRY)
                abort();
        return 0;
}
