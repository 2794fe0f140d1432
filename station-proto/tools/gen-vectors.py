#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Regenerates the test vectors of PROTOCOL.md §12 (between the vectors:begin/end markers).

An independent implementation of the framing (Python's zlib CRC and its own
COBS), so that the C libraries are checked against something they did not
produce: test-vectors.c parses PROTOCOL.md and compares byte for byte.

The certificates, CSR and signature are fixed, real P-256 material made once
with python3-cryptography (device key ECDSA P-256; the private keys were not
kept). The PROOF signature verifies against PUBKEY over
SHA-256(NONCE || CERT_HASH); test-vectors.c checks CERT_HASH = SHA-256(DEVICE_CERT).

Usage: tools/gen-vectors.py PROTOCOL.md   (rewrites the file in place)
"""
import re
import sys
import zlib

M = {
    'csr': (
        '3081d6307f020100301d311b301906035504030c123031323341354337394534'
        '423130324645453059301306072a8648ce3d020106082a8648ce3d0301070342'
        '00049c36d017a8ee83267ed88057f02fb3d4adb128f18c00192714ad82793ecb'
        '13c2664209e109d6f2ad125ea8b798dd632dbe0e017a9e3fd50e49811a3f4d76'
        '21aba000300a06082a8648ce3d0403020347003044022016b0e407f03a3f2ef7'
        'bf3dce759ab3e6e1d53da110df34ecea6df6d9baa713fd022031c04774ecf795'
        '2da2ef53f72049ff5358ce5d64fe4dca41f358eaf33289c515'
    ),
    'pubkey': (
        '049c36d017a8ee83267ed88057f02fb3d4adb128f18c00192714ad82793ecb13'
        'c2664209e109d6f2ad125ea8b798dd632dbe0e017a9e3fd50e49811a3f4d7621'
        'ab'
    ),
    'device_cert': (
        '308201bd30820162a00302010202101bc77bd21f3b32020ab1f4e914360c3530'
        '0a06082a8648ce3d040302302c310e300c060355040a0c0570726f7664311a30'
        '1806035504030c1170726f76642044656d6f205369676e6572301e170d323631'
        '3130313030303030305a170d3436313032373030303030305a301d311b301906'
        '035504030c123031323341354337394534423130324645453059301306072a86'
        '48ce3d020106082a8648ce3d030107034200049c36d017a8ee83267ed88057f0'
        '2fb3d4adb128f18c00192714ad82793ecb13c2664209e109d6f2ad125ea8b798'
        'dd632dbe0e017a9e3fd50e49811a3f4d7621aba3753073300c0603551d130101'
        'ff04023000300e0603551d0f0101ff04040302078030130603551d25040c300a'
        '06082b06010505070302301d0603551d0e04160414af7739048897e7982d81e1'
        '1cbfddbc1477fe215f301f0603551d23041830168014c1cb773b89f9b098bf60'
        '80c555da2b9b4ddf4b0c300a06082a8648ce3d0403020349003046022100a8af'
        '904fc763b67bf80a9b8de3fe67281f508097d0d7060df0b5111f8fc1931b0221'
        '00af177c8cf53cdabcdbc78efd028d61794e2d0360c2209f2d587ca2bd8879ee'
        'ad'
    ),
    'signer_cert': (
        '308201bb30820160a003020102021068dad4487613784ff8e7bd9394ac2d5130'
        '0a06082a8648ce3d040302302a310e300c060355040a0c0570726f7664311830'
        '1606035504030c0f70726f76642044656d6f20526f6f74301e170d3236313130'
        '313030303030305a170d3336313032393030303030305a302c310e300c060355'
        '040a0c0570726f7664311a301806035504030c1170726f76642044656d6f2053'
        '69676e65723059301306072a8648ce3d020106082a8648ce3d03010703420004'
        'f28be40b1954a8e071eaa58e2adf702af192067a1fa50ad87ae75421139221b5'
        'ad81079fc298e6dc144872d939203f2501973e67c9f990f118c3e19f249b86cf'
        'a366306430120603551d130101ff040830060101ff020100300e0603551d0f01'
        '01ff040403020106301d0603551d0e04160414c1cb773b89f9b098bf6080c555'
        'da2b9b4ddf4b0c301f0603551d23041830168014e806d82fcd3a4899a6dfc326'
        '9972c9c478c1deda300a06082a8648ce3d04030203490030460221008144a9bc'
        '013e11073d6d7587526a8d0c40a8752d089055ebad2b1afd9e04d1c1022100f3'
        '77451a573f6efe56c1c1e135be55c74a8ffda46929de7c41d467384312e735'
    ),
    'root_pubkey': (
        '049b0898f84f6d6366fa23477f5e46ce48c0038c1dbc2a8cfca0abe29967e056'
        '3cb43693ff5ac806d46c378d8e4ef5f471588081e5408f788479e06cdef1d0db'
        '23'
    ),
    'nonce': (
        '6e6f6e63652d30313afccd399a815cf508a45e91cc7f94e62d4521ab7975bb48'
    ),
    'signature': (
        'c82f800c8e410aa9150d71cbf81d4cf5cbe9da81060f16571bcae5bd3092c070'
        '48c3e97b057e81ffc59e28dc1336c4a33592e930da3e494c1351769a97bf5088'
    ),
    'cert_hash': (
        '36cb4c2ce4b0c27055ea5f0f8af95e20e28549809e7992e56e0d3106a7a57e81'
    ),
}
M = {k: bytes.fromhex(''.join(v)) for k, v in M.items()}

TAGS = {
    0x01: 'SERIAL', 0x02: 'MODEL', 0x03: 'FW_VERSION', 0x04: 'CAPS', 0x05: 'PROTO_VERSION',
    0x06: 'PUBKEY', 0x07: 'MAX_FRAME', 0x08: 'LOCKED', 0x10: 'NEW_KEY', 0x11: 'CSR',
    0x12: 'SUBJECT_CN', 0x20: 'DEVICE_CERT', 0x21: 'SIGNER_CERT', 0x22: 'ROOT_PUBKEY',
    0x23: 'COMPRESSED_CERT', 0x30: 'CFG_KEY', 0x31: 'CFG_VALUE', 0x40: 'NONCE',
    0x41: 'SIGNATURE', 0x42: 'CERT_HASH', 0x50: 'ERROR_CODE', 0x51: 'ERROR_TEXT',
    0x52: 'RESULT', 0x60: 'ECHO',
}
TYPES = {
    0x01: 'HELLO', 0x02: 'GET_CSR', 0x03: 'PUT_CERT', 0x04: 'PUT_CONFIG', 0x05: 'PROVE',
    0x06: 'LOCK', 0x07: 'PING', 0x08: 'RESULT', 0x81: 'IDENT', 0x82: 'CSR', 0x83: 'CERT_OK',
    0x84: 'CONFIG_OK', 0x85: 'PROOF', 0x86: 'LOCKED', 0x87: 'PONG', 0x88: 'RESULT_OK', 0xFF: 'ERROR',
}


def cobs(data):
    """Canonical COBS: no empty block after a final full (0xFF) block."""
    out = bytearray([0])
    code_at, code, after_full = 0, 1, False
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at, code, after_full = len(out), 1, False
            out.append(0)
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code, after_full = len(out), 1, True
                out.append(0)
    if code == 1 and after_full:
        out.pop()               # the block opened after a full block is empty: drop it
    else:
        out[code_at] = code
    return bytes(out)


def tlv(tag, value):
    return bytes([tag]) + len(value).to_bytes(2, 'big') + value


def frame(ftype, seq, tlvs, flags=0, version=1):
    payload = b''.join(tlv(t, v) for t, v in tlvs)
    head = bytes([version, ftype, flags]) + seq.to_bytes(2, 'big') + len(payload).to_bytes(2, 'big')
    body = head + payload
    return body + (zlib.crc32(body) & 0xffffffff).to_bytes(4, 'big')


def hexlines(data, first, indent):
    """16 bytes a line; the first line after @first, the rest indented."""
    out = []
    for i in range(0, max(len(data), 1), 16):
        chunk = ' '.join('%02x' % b for b in data[i:i + 16])
        out.append((first if i == 0 else indent) + chunk)
    return out


def note(tag, value):
    if tag in (0x02, 0x03, 0x12, 0x30, 0x51, 0x60) or (tag == 0x31 and all(0x20 <= c < 0x7f for c in value)):
        return '  # "%s"' % value.decode()
    if tag == 0x07:
        return '  # %d' % int.from_bytes(value, 'big')
    if tag == 0x04:
        return '  # 0x%08x' % int.from_bytes(value, 'big')
    if tag == 0x50:
        return '  # %d' % int.from_bytes(value, 'big')
    return ''


def vector(name, frm, ftype, seq, tlvs, flags=0, comment=None):
    f = frame(ftype, seq, tlvs, flags)
    w = b'\x00' + cobs(f) + b'\x00'
    out = ['```sp-vector']
    if comment:
        out.append('# ' + comment)
    out += ['name:    ' + name,
            'from:    ' + frm,
            'version: 1',
            'type:    0x%02x  # %s' % (ftype, TYPES[ftype]),
            'flags:   0x%02x' % flags,
            'seq:     0x%04x' % seq,
            'len:     %d' % (len(f) - 11)]
    for t, v in tlvs:
        head = 'tlv:     0x%02x %-15s' % (t, TAGS[t])
        lines = hexlines(v, head + ' ', ' ' * (len(head) + 1)) if v else [head]
        lines[-1] += note(t, v)
        out += lines
    out += hexlines(f, 'frame:   ', '         ')
    out += hexlines(w, 'wire:    ', '         ')
    out.append('```')
    return '\n'.join(out)


SEQ = 0x4a21
SERIAL = bytes.fromhex('0123a5c79e4b102fee')
CN = b'0123A5C79E4B102FEE'
u8 = lambda v: bytes([v])
u16 = lambda v: v.to_bytes(2, 'big')
u32 = lambda v: v.to_bytes(4, 'big')

V = [
    ('hello', 'station', 0x01, SEQ, [(0x05, u8(1)), (0x07, u16(4096))], 0, None),
    ('ident', 'board', 0x81, SEQ, [
        (0x01, SERIAL), (0x02, b'provd-devkit-1'), (0x03, b'1.4.2'), (0x04, u32(0x13)),
        (0x05, u8(1)), (0x07, u16(4096)), (0x08, u8(0))], 0, None),
    ('get_csr', 'station', 0x02, SEQ + 1, [(0x10, u8(1)), (0x12, CN)], 0, None),
    ('csr', 'board', 0x82, SEQ + 1, [(0x11, M['csr']), (0x06, M['pubkey'])], 0, None),
    ('put_cert', 'station', 0x03, SEQ + 2, [(0x20, M['device_cert']), (0x21, M['signer_cert'])], 0, None),
    ('cert_ok', 'board', 0x83, SEQ + 2, [(0x42, M['cert_hash'])], 0, None),
    ('put_config', 'station', 0x04, SEQ + 3, [
        (0x30, b'aws_endpoint'), (0x31, b'a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com'),
        (0x30, b'thing_name'), (0x31, CN)], 0, None),
    ('config_ok', 'board', 0x84, SEQ + 3, [], 0, None),
    ('prove', 'station', 0x05, SEQ + 4, [(0x40, M['nonce'])], 0, None),
    ('proof', 'board', 0x85, SEQ + 4, [(0x41, M['signature']), (0x42, M['cert_hash'])], 0, None),
    ('prove_retransmit', 'station', 0x05, SEQ + 4, [(0x40, M['nonce'])], 0x01,
     'the PROOF was lost: the station repeats PROVE with the same seq and RETRANSMIT'),
    ('proof_replay', 'board', 0x85, SEQ + 4, [(0x41, M['signature']), (0x42, M['cert_hash'])], 0x02,
     'the board answers from its cache, without signing again, and sets REPLAY'),
    ('lock', 'station', 0x06, SEQ + 5, [], 0, None),
    ('locked', 'board', 0x86, SEQ + 5, [], 0, None),
    ('get_csr_locked', 'station', 0x02, SEQ + 6, [(0x10, u8(1))], 0,
     'a new key is asked for after LOCK'),
    ('error', 'board', 0xFF, SEQ + 6, [(0x50, u16(6))], 0, 'SP_ERR_LOCKED'),
    ('ping', 'station', 0x07, SEQ + 7, [(0x60, b'ping')], 0, None),
    ('pong', 'board', 0x87, SEQ + 7, [(0x60, b'ping')], 0, None),
    ('result', 'station', 0x08, SEQ + 8, [(0x52, u8(0))], 0, None),
    ('result_ok', 'board', 0x88, SEQ + 8, [], 0, None),
]


def main():
    path = sys.argv[1]
    doc = open(path, encoding='utf-8').read()
    blocks = {}
    for v in V:
        blocks[v[0]] = vector(*v)
    # Each vector sits between <!-- vector:NAME --> and <!-- /vector -->.
    def repl(m):
        return '<!-- vector:%s -->\n%s\n<!-- /vector -->' % (m.group(1), blocks.pop(m.group(1)))
    doc = re.sub(r'<!-- vector:([a-z_]+) -->.*?<!-- /vector -->', repl, doc, flags=re.S)
    if blocks:
        sys.exit('no place in %s for: %s' % (path, ', '.join(blocks)))
    open(path, 'w', encoding='utf-8').write(doc)


if __name__ == '__main__':
    main()
