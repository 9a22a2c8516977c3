"""Trivy reports and a pod listing for the demo estate, so the demo shows real exposure.

:func:`write_demo_scans` reads a collected demo database (``repoaudit demo``) and writes

* ``trivy/<repository>/<tag>-<date>.json``: ``trivy image -f json`` reports (schema 2) for
  most demo images, the way a registry's scanner produces them: every image pushed in
  the last :data:`SCAN_ON_PUSH_DAYS` days is scanned minutes after its push, the images
  running in the namespaces of :data:`NIGHTLY_RESCAN` are scanned again every night, and
  two public images are scanned by a nightly job of the platform team. Left unscanned:
  repositories the scanner skips (:data:`SKIPPED_REPOSITORIES`, CUDA images that time
  out), images pushed before scanning was switched on, and about one push in thirty
  whose scan failed;
* ``pods.json``: ``kubectl get pods -A -o json`` output (a ``List`` of Pods, as kubectl
  writes it) of one cluster deploying a subset of the estate: by tag (some of which have
  moved since the pods started), by digest, by image ID only (a node runtime that
  reports a bare ``sha256:``), a Pending pod, finished Job pods, init containers, and
  workloads pulling straight from Docker Hub, Quay and registry.k8s.io.

What an image's report finds is a function of its content, so the same digest gets the
same findings in every repository and every run: operating-system findings depend on
how old the image's base release is (read from its ``org.opencontainers.image.base.name``
label), language-package findings on which generation of its dependency layer it
carries (a team that has not touched its lock file keeps its old findings).

The advisories are real: CVE IDs, affected packages, severities and publication dates
follow the public records (NVD, GitHub, Debian, Ubuntu and Alpine trackers). Installed
and fixed versions and CVSS scores are representative of those records, not an
authoritative copy, and which image carries which advisory is invented.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from repoaudit.demo.estate import BASES, PROFILES, REGISTRY, REPO_SPECS

__all__ = ["NIGHTLY_RESCAN", "SCAN_ON_PUSH_DAYS", "SKIPPED_REPOSITORIES", "write_demo_scans"]

TRIVY_VERSION = "0.65.0"
SCAN_ON_PUSH_DAYS = 120
NIGHTLY_RESCAN = ("payments", "platform", "web", "data")
SKIPPED_REPOSITORIES = frozenset({"ml/training-base", "ml/triton-custom", "platform/build-cache"})
CLUSTER_NODES = ("node-a", "node-b", "node-c", "node-d")

# --------------------------------------------------------------------------
# Advisories
# --------------------------------------------------------------------------
# Columns: id, packages (comma-separated: one finding each), installed version, fixed version
# ("-": none yet, Trivy status "affected"; "wontfix": status "will_not_fix"), severity, CVSS
# v3 score ("-": none), publication date, gate, title. For operating-system catalogues the
# gate is the base-release age in days above which the image still carries the advisory
# ("-": every release); for language catalogues "*" means a repository's dependencies pick
# it up by chance and fix it at some generation, "only:REPO|REPO" that those repositories
# carry it in every build.

DEBIAN = """
CVE-2023-4911   libc6,libc-bin             2.36-9+deb12u1   2.36-9+deb12u3   HIGH      7.8  2023-10-03  700  glibc: buffer overflow in ld.so leading to privilege escalation
CVE-2023-31484  perl-base                  5.36.0-7         5.36.0-7+deb12u1 HIGH      8.1  2023-04-29  700  perl: CPAN.pm does not verify TLS certificates when downloading distributions
CVE-2023-47038  perl-base                  5.36.0-7         5.36.0-7+deb12u1 HIGH      7.8  2023-12-18  700  perl: write past buffer end via illegal user-defined Unicode property
CVE-2024-2961   libc6,libc-bin             2.36-9+deb12u4   2.36-9+deb12u7   HIGH      7.3  2024-04-17  450  glibc: out of bounds write in iconv may lead to remote code execution
CVE-2024-33599  libc6,libc-bin             2.36-9+deb12u4   2.36-9+deb12u7   HIGH      7.6  2024-05-06  450  glibc: stack-based buffer overflow in netgroup cache
CVE-2024-28182  libnghttp2-14              1.52.0-1         1.52.0-1+deb12u1 MEDIUM    5.3  2024-04-04  450  nghttp2: CONTINUATION frames DoS
CVE-2024-6119   libssl3                    3.0.11-1~deb12u2 3.0.14-1~deb12u2 HIGH      7.5  2024-09-03  250  openssl: possible denial of service in X.509 name checks
CVE-2024-9143   libssl3                    3.0.14-1~deb12u2 3.0.15-1~deb12u1 LOW       4.3  2024-10-16  250  openssl: low-level invalid GF(2^m) parameters lead to OOB memory access
CVE-2025-0395   libc6,libc-bin             2.36-9+deb12u8   2.36-9+deb12u10  MEDIUM    7.5  2025-01-22  100  glibc: buffer overflow when the assert() function fails
CVE-2024-13176  libssl3                    3.0.15-1~deb12u1 3.0.16-1~deb12u1 MEDIUM    4.1  2025-01-20  100  openssl: timing side-channel in ECDSA signature computation
CVE-2025-4802   libc6,libc-bin             2.36-9+deb12u10  2.36-9+deb12u11  HIGH      7.8  2025-05-16  20   glibc: static setuid binary dlopen may incorrectly search LD_LIBRARY_PATH
CVE-2025-6020   libpam-modules,libpam0g    1.5.2-6+deb12u1  1.5.2-6+deb12u2  HIGH      7.8  2025-06-17  20   linux-pam: directory traversal in pam_namespace
CVE-2023-45853  zlib1g                     1:1.2.13.dfsg-1  wontfix          CRITICAL  9.8  2023-10-14  -    zlib: integer overflow and heap-based buffer overflow in zipOpenNewFileInZip4_6
CVE-2023-50495  libncursesw6,libtinfo6,ncurses-base 6.4-4   -                MEDIUM    6.5  2023-12-12  -    ncurses: segmentation fault via _nc_wrap_entry()
CVE-2023-4039   gcc-12-base,libgcc-s1,libstdc++6 12.2.0-14  -                MEDIUM    4.8  2023-09-13  -    gcc: -fstack-protector fails to guard dynamic stack allocations on ARM64
CVE-2023-31437  libsystemd0,libudev1       252.26-1~deb12u2 -                MEDIUM    5.3  2023-06-13  -    systemd: sealed logs can be modified without detection
CVE-2011-3374   apt,libapt-pkg6.0          2.6.1            -                LOW       3.7  2019-11-26  -    apt: does not correctly validate the keyring it downloads
CVE-2022-0563   libblkid1,libmount1,libsmartcols1,libuuid1,util-linux 2.38.1-5+b1 - LOW 5.5 2022-02-21 - util-linux: partial disclosure of arbitrary files in chfn and chsh
CVE-2016-2781   coreutils                  9.1-1            -                LOW       6.5  2017-02-07  -    coreutils: non-privileged session can escape to the parent session in chroot
CVE-2022-27943  gcc-12-base,libgcc-s1,libstdc++6 12.2.0-14  -                LOW       5.5  2022-03-26  -    binutils: libiberty/rust-demangle.c stack exhaustion
CVE-2007-5686   login,passwd               1:4.13+dfsg1-1   -                LOW       4.9  2007-10-28  -    shadow-utils: initscripts in rPath Linux 1 set insecure permissions for log files
CVE-2023-29383  login,passwd               1:4.13+dfsg1-1   -                LOW       3.3  2023-04-14  -    shadow: improper input validation in shadow-utils package utility chfn
CVE-2005-2541   tar                        1.34+dfsg-1.2    -                LOW       9.8  2005-08-10  -    tar: does not properly warn the user when extracting setuid or setgid files
CVE-2019-1010022 libc6,libc-bin            2.36-9+deb12u7   -                LOW       9.8  2019-07-15  -    glibc: stack guard protection bypass
CVE-2018-20796  libc6,libc-bin             2.36-9+deb12u7   -                LOW       7.5  2019-02-26  -    glibc: uncontrolled recursion in function check_dst_limits_calc_pos_1 in posix/regexec.c
TEMP-0841856-B18BAF bash                   5.2.15-2+b2      -                LOW       -    2019-11-26  -    [Privilege escalation possible to other user than root]
"""

DEBIAN_PYTHON = """
CVE-2024-45490  libexpat1                  2.5.0-1          2.5.0-1+deb12u1  CRITICAL  9.8  2024-08-30  450  libexpat: negative length parsing issue
CVE-2024-45491  libexpat1                  2.5.0-1          2.5.0-1+deb12u1  CRITICAL  9.8  2024-08-30  450  libexpat: integer overflow in dtdCopy
CVE-2024-45492  libexpat1                  2.5.0-1          2.5.0-1+deb12u1  CRITICAL  9.8  2024-08-30  450  libexpat: integer overflow in nextScaffoldPart
CVE-2023-7104   libsqlite3-0               3.40.1-2         3.40.1-2+deb12u1 HIGH      7.3  2023-12-29  700  sqlite: heap-buffer-overflow at sessionfuzz
CVE-2024-37371  libgssapi-krb5-2,libk5crypto3,libkrb5-3,libkrb5support0 1.20.1-2+deb12u1 1.20.1-2+deb12u2 CRITICAL 9.1 2024-06-28 250 krb5: GSS message token handling
CVE-2025-6965   libsqlite3-0               3.40.1-2+deb12u1 3.40.1-2+deb12u2 HIGH      7.2  2025-07-15  20   sqlite: integer truncation when the number of aggregate terms exceeds the columns available
CVE-2024-26458  libgssapi-krb5-2,libkrb5-3 1.20.1-2+deb12u2 -                MEDIUM    5.3  2024-02-29  -    krb5: memory leak at /krb5/src/lib/rpc/pmap_rmt.c
"""

NODE_BASE = """
CVE-2024-21538  cross-spawn                7.0.3            7.0.5            HIGH      7.5  2024-11-08  250  cross-spawn: regular expression denial of service (npm's bundled copy)
CVE-2024-4068   braces                     3.0.2            3.0.3            HIGH      7.5  2024-05-14  450  braces: fails to limit the number of characters it can handle
CVE-2022-25883  semver                     7.5.1            7.5.2            HIGH      7.5  2023-06-21  700  semver: regular expression denial of service in new Range
CVE-2024-55565  nanoid                     3.3.7            3.3.8            MEDIUM    4.3  2024-12-09  100  nanoid: mishandles non-integer values
"""

GOLANG_BASE = """
CVE-2024-24790  stdlib                     v1.22.0          1.21.11, 1.22.4  CRITICAL  9.8  2024-06-05  450  golang: net/netip: unexpected behavior from Is methods for IPv4-mapped IPv6 addresses
CVE-2023-45288  stdlib                     v1.22.0          1.21.9, 1.22.2   HIGH      7.5  2024-04-04  450  golang: net/http, x/net/http2: unlimited number of CONTINUATION frames causes DoS
CVE-2024-24791  stdlib                     v1.22.2          1.21.12, 1.22.5  HIGH      7.5  2024-07-02  250  net/http: denial of service due to improper 100-continue handling
CVE-2024-34156  stdlib                     v1.22.2          1.22.7, 1.23.1   HIGH      7.5  2024-09-06  50   encoding/gob: stack exhaustion in Decoder.Decode
CVE-2024-45336  stdlib                     v1.22.2          1.22.11, 1.23.5  MEDIUM    6.1  2025-01-28  -    golang: net/http: sensitive headers incorrectly sent after cross-domain redirect
"""

UBUNTU = """
CVE-2023-4911   libc6,libc-bin             2.35-0ubuntu3.3  2.35-0ubuntu3.4  HIGH      7.8  2023-10-03  700  glibc: buffer overflow in ld.so leading to privilege escalation
CVE-2023-5363   libssl3                    3.0.2-0ubuntu1.10 3.0.2-0ubuntu1.12 HIGH    7.5  2023-10-25  700  openssl: incorrect cipher key and IV length processing
CVE-2024-28085  bsdutils,libblkid1,libmount1,libsmartcols1,libuuid1,mount,util-linux 2.37.2-4ubuntu3 2.37.2-4ubuntu3.3 MEDIUM 3.3 2024-03-27 450 util-linux: CVE-2024-28085: wall: escape sequence injection
CVE-2024-2961   libc6,libc-bin             2.35-0ubuntu3.6  2.35-0ubuntu3.7  HIGH      7.3  2024-04-17  450  glibc: out of bounds write in iconv may lead to remote code execution
CVE-2024-37371  libgssapi-krb5-2,libk5crypto3,libkrb5-3,libkrb5support0 1.19.2-2ubuntu0.3 1.19.2-2ubuntu0.4 MEDIUM 9.1 2024-06-28 250 krb5: GSS message token handling
CVE-2024-45490  libexpat1                  2.4.7-1ubuntu0.3 2.4.7-1ubuntu0.4 MEDIUM    9.8  2024-08-30  250  libexpat: negative length parsing issue
CVE-2024-5535   libssl3                    3.0.2-0ubuntu1.15 3.0.2-0ubuntu1.17 MEDIUM  9.1  2024-06-27  100  openssl: SSL_select_next_proto buffer overread
CVE-2024-52533  libglib2.0-0               2.72.4-0ubuntu2.3 2.72.4-0ubuntu2.4 MEDIUM  9.8  2024-11-11  100  glib: buffer overflow in set_connect_msg()
CVE-2025-0395   libc6,libc-bin             2.35-0ubuntu3.8  2.35-0ubuntu3.9  MEDIUM    7.5  2025-01-22  20   glibc: buffer overflow when the assert() function fails
CVE-2022-3219   gpgv                       2.2.27-3ubuntu2.1 -               LOW       3.3  2023-02-23  -    gnupg: denial of service issue (resource consumption) using compressed packets
CVE-2016-2781   coreutils                  8.32-4.1ubuntu1.2 -               LOW       6.5  2017-02-07  -    coreutils: non-privileged session can escape to the parent session in chroot
CVE-2022-27943  gcc-12-base,libgcc-s1,libstdc++6 12.3.0-1ubuntu1~22.04 -     LOW       5.5  2022-03-26  -    binutils: libiberty/rust-demangle.c stack exhaustion
CVE-2024-41996  libssl3                    3.0.2-0ubuntu1.18 -               LOW       7.5  2024-08-26  -    openssl: remote attackers can cause a denial of service via the DHE key agreement
CVE-2023-7008   libsystemd0,libudev1       249.11-0ubuntu3.12 -              LOW       5.9  2023-12-23  -    systemd-resolved: unsigned name response in signed zone is not refused when DNSSEC=yes
CVE-2023-29383  login,passwd               1:4.8.1-2ubuntu2.2 -              LOW       3.3  2023-04-14  -    shadow: improper input validation in shadow-utils package utility chfn
"""

ALPINE = """
CVE-2023-42363  busybox,busybox-binsh,ssl_client 1.36.1-r15 1.36.1-r17      MEDIUM    5.5  2023-11-27  450  busybox: use-after-free in awk
CVE-2023-42364  busybox,busybox-binsh,ssl_client 1.36.1-r15 1.36.1-r19      MEDIUM    5.5  2023-11-27  450  busybox: use-after-free in awk
CVE-2024-0727   libcrypto3,libssl3         3.1.4-r2         3.1.4-r5         MEDIUM    5.5  2024-01-26  450  openssl: denial of service via null dereference in PKCS12
CVE-2024-0853   curl,libcurl               8.5.0-r0         8.6.0-r0         MEDIUM    5.3  2024-02-03  450  curl: OCSP verification bypass with TLS session reuse
CVE-2024-2511   libcrypto3,libssl3         3.1.4-r5         3.1.4-r6         UNKNOWN   -    2024-04-08  250  openssl: unbounded memory growth with session handling in TLSv1.3
CVE-2024-4741   libcrypto3,libssl3         3.1.4-r6         3.1.6-r0         HIGH      7.5  2024-11-13  250  openssl: use after free with SSL_free_buffers
CVE-2024-2398   curl,libcurl               8.5.0-r0         8.7.1-r0         MEDIUM    8.6  2024-03-27  250  curl: HTTP/2 push headers memory-leak
CVE-2024-5535   libcrypto3,libssl3         3.1.6-r0         3.1.6-r1         CRITICAL  9.1  2024-06-27  100  openssl: SSL_select_next_proto buffer overread
CVE-2024-6119   libcrypto3,libssl3         3.1.6-r1         3.1.7-r0         HIGH      7.5  2024-09-03  100  openssl: possible denial of service in X.509 name checks
CVE-2024-7264   curl,libcurl               8.9.0-r0         8.9.1-r0         MEDIUM    6.5  2024-07-31  20   curl: ASN.1 date parser overread
CVE-2024-9143   libcrypto3,libssl3         3.1.7-r0         3.1.7-r1         LOW       4.3  2024-10-16  -    openssl: low-level invalid GF(2^m) parameters lead to OOB memory access
"""

JAVA = """
CVE-2021-44228  org.apache.logging.log4j:log4j-core 2.14.1  2.15.0, 2.3.1, 2.12.2 CRITICAL 10.0 2021-12-10 only:data/hive-metastore  log4j-core: Remote code injection in Log4j
CVE-2021-45046  org.apache.logging.log4j:log4j-core 2.14.1  2.16.0, 2.12.2   CRITICAL  9.0  2021-12-14  only:data/hive-metastore  log4j-core: DoS in log4j 2.x with thread context message pattern and context lookup pattern
CVE-2022-22965  org.springframework:spring-beans 5.3.15     5.3.18, 5.2.20   CRITICAL  9.8  2022-04-01  only:payments/settlement-batch  spring-framework: RCE via Data Binding on JDK 9+
CVE-2025-24813  org.apache.tomcat.embed:tomcat-embed-core 10.1.34 10.1.35, 11.0.3 CRITICAL 9.8 2025-03-10 * tomcat: potential RCE and/or information disclosure and/or information corruption with partial PUT
CVE-2024-50379  org.apache.tomcat.embed:tomcat-embed-core 10.1.33 10.1.34, 11.0.2 CRITICAL 9.8 2024-12-17 * tomcat: RCE due to TOCTOU issue in JSP compilation
CVE-2024-1597   org.postgresql:postgresql  42.6.0           42.6.1, 42.7.2   CRITICAL  9.8  2024-02-19  *    pgjdbc: PostgreSQL JDBC Driver allows attacker to inject SQL if using PreferQueryMode=SIMPLE
CVE-2024-22243  org.springframework:spring-web 5.3.31       5.3.32, 6.1.4    HIGH      8.1  2024-02-23  *    springframework: URL Parsing with Host Validation
CVE-2024-22262  org.springframework:spring-web 5.3.33       5.3.34, 6.1.6    HIGH      8.1  2024-04-16  *    springframework: URL Parsing with Host Validation
CVE-2024-38816  org.springframework:spring-webmvc 6.1.12    6.1.13           HIGH      7.5  2024-09-13  *    spring-webmvc: Path traversal vulnerability in functional web frameworks
CVE-2022-1471   org.yaml:snakeyaml         1.33             2.0              HIGH      8.3  2022-12-01  *    SnakeYaml: Constructor Deserialization Remote Code Execution
CVE-2023-6378   ch.qos.logback:logback-classic,ch.qos.logback:logback-core 1.2.12 1.2.13, 1.3.12, 1.4.12 HIGH 7.5 2023-11-29 * logback: serialization vulnerability in logback receiver
CVE-2023-44487  io.netty:netty-codec-http2 4.1.97.Final     4.1.100.Final    HIGH      7.5  2023-10-10  *    HTTP/2: Multiple HTTP/2 enabled web servers are vulnerable to a DDoS attack (Rapid Reset Attack)
CVE-2022-42003  com.fasterxml.jackson.core:jackson-databind 2.13.3 2.12.7.1, 2.13.4.2 HIGH 7.5 2022-10-02 * jackson-databind: deep wrapper array nesting wrt UNWRAP_SINGLE_VALUE_ARRAYS
CVE-2024-7254   com.google.protobuf:protobuf-java 3.21.12   3.25.5, 4.27.5   HIGH      7.5  2024-09-19  *    protobuf: StackOverflow vulnerability in Protocol Buffers
CVE-2024-25710  org.apache.commons:commons-compress 1.24.0  1.26.0           HIGH      8.1  2024-02-19  *    commons-compress: Denial of service caused by an infinite loop for a corrupted DUMP file
CVE-2024-29025  io.netty:netty-codec-http  4.1.100.Final    4.1.108.Final    MEDIUM    5.3  2024-03-25  *    netty-codec-http: Allocation of Resources Without Limits or Throttling
CVE-2024-38809  org.springframework:spring-web 6.1.11       6.1.12, 5.3.38   MEDIUM    5.3  2024-08-20  *    springframework: DoS via conditional HTTP request
CVE-2024-47554  commons-io:commons-io      2.11.0           2.14.0           MEDIUM    4.3  2024-10-03  *    apache-commons-io: Possible denial of service attack on untrusted input to XmlStreamReader
CVE-2020-8908   com.google.guava:guava     31.1-jre         32.0.0-android   LOW       3.3  2020-12-10  *    guava: local information disclosure via temporary directory created with unsafe permissions
"""

PYTHON = """
CVE-2024-6345   setuptools                 68.2.2           70.0.0           HIGH      8.8  2024-07-15  *    pypa/setuptools: Remote code execution via download functions in the package_index module
CVE-2024-1135   gunicorn                   21.2.0           22.0.0           HIGH      8.2  2024-04-16  *    python-gunicorn: HTTP Request Smuggling due to improper validation of Transfer-Encoding headers
CVE-2024-26130  cryptography               41.0.7           42.0.4           HIGH      7.5  2024-02-21  *    python-cryptography: NULL-dereference when loading PKCS7 certificates
CVE-2023-50782  cryptography               41.0.7           42.0.0           HIGH      7.5  2024-02-05  *    python-cryptography: Bleichenbacher timing oracle attack against RSA decryption
CVE-2024-23334  aiohttp                    3.9.1            3.9.2            HIGH      7.5  2024-01-29  *    aiohttp: follow_symlinks directory traversal vulnerability
CVE-2024-34069  werkzeug                   3.0.1            3.0.3            HIGH      7.5  2024-05-06  *    python-werkzeug: user may execute code on a developer's machine
CVE-2023-50447  pillow                     10.1.0           10.2.0           HIGH      8.1  2024-01-19  *    pillow: Arbitrary Code Execution via the environment parameter
CVE-2024-24762  python-multipart           0.0.6            0.0.7            HIGH      7.5  2024-02-05  *    python-multipart: Regular Expression Denial of Service (ReDoS)
CVE-2025-43859  h11                        0.14.0           0.16.0           CRITICAL  9.1  2025-04-24  *    h11: h11 accepts some malformed Chunked-Encoding bodies
CVE-2023-37920  certifi                    2023.5.7         2023.7.22        CRITICAL  9.8  2023-07-25  *    python-certifi: Removal of e-Tugra root certificate
CVE-2024-35195  requests                   2.31.0           2.32.0           MEDIUM    5.6  2024-05-20  *    requests: subsequent requests to the same host ignore cert verification
CVE-2024-37891  urllib3                    2.0.7            1.26.19, 2.2.2   MEDIUM    4.4  2024-06-17  *    urllib3: proxy-authorization request header is not stripped during cross-origin redirects
CVE-2024-34064  jinja2                     3.1.3            3.1.4            MEDIUM    5.4  2024-05-06  *    jinja2: accepts keys containing non-attribute characters
CVE-2024-3651   idna                       3.6              3.7              MEDIUM    6.2  2024-07-07  *    python-idna: potential DoS via resource consumption via specially crafted inputs to idna.encode()
CVE-2024-5569   zipp                       3.17.0           3.19.1           LOW       6.2  2024-07-09  *    github.com/jaraco/zipp: Denial of Service (infinite loop) via crafted zip file in jaraco/zipp
"""

ML = """
CVE-2025-32434  torch                      2.5.1            2.6.0            CRITICAL  9.8  2025-04-18  *    pytorch: torch.load with weights_only=True leads to remote code execution
CVE-2024-11392  transformers               4.44.2           4.48.0           HIGH      8.8  2024-11-22  *    transformers: MobileViTV2 deserialization of untrusted data remote code execution
"""

NODE = """
CVE-2025-29927  next                       14.2.24          14.2.25, 15.2.3  CRITICAL  9.1  2025-03-21  only:web/storefront|web/checkout-ui  next.js: Authorization bypass in Next.js Middleware
CVE-2024-45296  path-to-regexp             0.1.7            0.1.10, 8.0.0    HIGH      7.5  2024-09-09  *    path-to-regexp: Backtracking regular expressions cause ReDoS
CVE-2024-45590  body-parser                1.20.1           1.20.3           HIGH      7.5  2024-09-10  *    body-parser: Denial of Service Vulnerability in body-parser
CVE-2024-39338  axios                      1.6.8            1.7.4            HIGH      7.5  2024-08-12  *    axios: Server-Side Request Forgery
CVE-2024-37890  ws                         8.13.0           8.17.1, 7.5.10   HIGH      7.5  2024-06-17  *    nodejs-ws: denial of service when handling a request with many HTTP headers
CVE-2024-21536  http-proxy-middleware      2.0.6            2.0.7, 3.0.3     HIGH      7.5  2024-10-19  *    http-proxy-middleware: Denial of Service
CVE-2024-29041  express                    4.18.2           4.19.2, 5.0.0-beta.3 MEDIUM 6.1 2024-03-25 *    express: cause malformed URLs to be evaluated
CVE-2024-4067   micromatch                 4.0.5            4.0.8            MEDIUM    5.3  2024-05-14  *    micromatch: vulnerable to Regular Expression Denial of Service
CVE-2024-28849  follow-redirects           1.15.5           1.15.6           MEDIUM    6.5  2024-03-14  *    follow-redirects: Possible credential leak
CVE-2023-45857  axios                      1.5.1            1.6.0            MEDIUM    6.5  2023-11-08  *    axios: exposure of confidential data stored in cookies
CVE-2024-47764  cookie                     0.5.0            0.7.0            LOW       -    2024-10-04  *    cookie: cookie accepts cookie name, path, and domain with out of bounds characters
CVE-2024-43799  send                       0.18.0           0.19.0           LOW       5.0  2024-09-10  *    send: Code Execution Vulnerability in Send Library
"""

GO = """
CVE-2024-45337  golang.org/x/crypto        v0.24.0          0.31.0           CRITICAL  9.1  2024-12-12  *    golang.org/x/crypto/ssh: Misuse of ServerConfig.PublicKeyCallback may cause authorization bypass
CVE-2024-24790  stdlib                     v1.22.2          1.21.11, 1.22.4  CRITICAL  9.8  2024-06-05  *    golang: net/netip: unexpected behavior from Is methods for IPv4-mapped IPv6 addresses
CVE-2023-39325  golang.org/x/net           v0.15.0          0.17.0           HIGH      7.5  2023-10-11  *    golang: net/http, x/net/http2: rapid stream resets can cause excessive work (CVE-2023-44487)
CVE-2023-44487  google.golang.org/grpc     v1.58.2          1.56.3, 1.57.1, 1.58.3 HIGH 7.5 2023-10-10 * HTTP/2: Multiple HTTP/2 enabled web servers are vulnerable to a DDoS attack (Rapid Reset Attack)
CVE-2023-45142  go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp v0.42.0 0.44.0 HIGH 7.5 2023-10-12 * opentelemetry: DoS vulnerability in otelhttp
CVE-2024-24791  stdlib                     v1.22.2          1.21.12, 1.22.5  HIGH      7.5  2024-07-02  *    net/http: Denial of service due to improper 100-continue handling in net/http
CVE-2024-34156  stdlib                     v1.22.5          1.22.7, 1.23.1   HIGH      7.5  2024-09-06  *    encoding/gob: golang: Calling Decoder.Decode on a message which contains deeply nested structures can cause a panic due to stack exhaustion
CVE-2025-22868  golang.org/x/oauth2        v0.21.0          0.27.0           HIGH      7.5  2025-02-26  *    golang.org/x/oauth2/jws: Unexpected memory consumption during token parsing in golang.org/x/oauth2
CVE-2025-22869  golang.org/x/crypto        v0.31.0          0.35.0           HIGH      7.5  2025-02-26  *    golang.org/x/crypto/ssh: Denial of Service in the Key Exchange of golang.org/x/crypto/ssh
CVE-2025-30204  github.com/golang-jwt/jwt/v5 v5.2.1         5.2.2            HIGH      7.5  2025-03-21  *    golang-jwt/jwt: jwt-go allows excessive memory allocation during header parsing
CVE-2024-21626  github.com/opencontainers/runc v1.1.9       1.1.12           HIGH      8.6  2024-01-31  *    runc: file descriptor leak
CVE-2023-48795  golang.org/x/crypto        v0.15.0          0.17.0           MEDIUM    5.9  2023-12-18  *    ssh: Prefix truncation attack on Binary Packet Protocol (BPP)
CVE-2024-45338  golang.org/x/net           v0.28.0          0.33.0           MEDIUM    5.3  2024-12-18  *    golang.org/x/net/html: Non-linear parsing of case-insensitive content in golang.org/x/net/html
CVE-2024-28180  github.com/go-jose/go-jose/v3 v3.0.1        3.0.3            MEDIUM    4.3  2024-03-09  *    jose-go: improper handling of highly compressed data
CVE-2025-22866  stdlib                     v1.22.7          1.22.12, 1.23.6, 1.24.0-rc.3 MEDIUM 4.0 2025-02-06 * crypto/internal/nistec: golang: Timing sidechannel for P-256 on ppc64le in crypto/internal/nistec
"""

# Operating-system catalogues per base image (derived bases add their own layers' packages).
OS_CATALOGS: dict[str, tuple[str, ...]] = {
    "debian-bookworm-slim": ("DEBIAN",),
    "python-3.12-slim": ("DEBIAN", "DEBIAN_PYTHON"),
    "node-20": ("DEBIAN", "NODE_BASE"),
    "golang-builder": ("DEBIAN", "GOLANG_BASE"),
    "ubuntu-jammy": ("UBUNTU",),
    "eclipse-temurin-21": ("UBUNTU",),
    "cuda-12-runtime": ("UBUNTU",),
    "alpine-3.19": ("ALPINE",),
    "distroless-static": (),
}
# Language catalogues per Dockerfile profile (what the team's own layers install).
APP_CATALOGS: dict[str, tuple[str, ...]] = {
    "eclipse-temurin-21": ("JAVA",),
    "python-3.12-slim": ("PYTHON",),
    "node-20": ("NODE",),
    "distroless-static": ("GO",),
    "alpine-3.19": ("GO",),
    "debian-bookworm-slim": (),
    "golang-builder": ("GO",),
    "cuda-12-runtime": ("PYTHON", "ML"),
}
OS_FAMILY = {"debian-bookworm-slim": "debian", "ubuntu-jammy": "ubuntu", "alpine-3.19": "alpine",
             "distroless-static": "debian"}
# What Trivy calls each catalogue's packages: (result Type, Class, Target or None for the OS line).
RESULT_KIND = {
    "DEBIAN": ("debian", "os-pkgs", None), "DEBIAN_PYTHON": ("debian", "os-pkgs", None),
    "UBUNTU": ("ubuntu", "os-pkgs", None), "ALPINE": ("alpine", "os-pkgs", None),
    "NODE_BASE": ("node-pkg", "lang-pkgs", "Node.js"), "GOLANG_BASE": ("gobinary", "lang-pkgs", "usr/local/go/bin/go"),
    "JAVA": ("jar", "lang-pkgs", "Java"), "PYTHON": ("python-pkg", "lang-pkgs", "Python"),
    "ML": ("python-pkg", "lang-pkgs", "Python"), "NODE": ("node-pkg", "lang-pkgs", "Node.js"),
    "GO": ("gobinary", "lang-pkgs", "usr/local/bin/app"),
}
DATA_SOURCES = {
    "debian": {"ID": "debian", "Name": "Debian Security Tracker",
               "URL": "https://salsa.debian.org/security-tracker-team/security-tracker"},
    "ubuntu": {"ID": "ubuntu", "Name": "Ubuntu CVE Tracker", "URL": "https://git.launchpad.net/ubuntu-cve-tracker"},
    "alpine": {"ID": "alpine", "Name": "Alpine Secdb", "URL": "https://secdb.alpinelinux.org/"},
    "jar": {"ID": "ghsa", "Name": "GitHub Security Advisory Maven",
            "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Amaven"},
    "python-pkg": {"ID": "ghsa", "Name": "GitHub Security Advisory pip",
                   "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Apip"},
    "node-pkg": {"ID": "ghsa", "Name": "GitHub Security Advisory npm",
                 "URL": "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Anpm"},
    "gobinary": {"ID": "govulndb", "Name": "The Go Vulnerability Database", "URL": "https://pkg.go.dev/vuln/"},
}
# Representative CVSS v3.1 vectors for the scores used above.
VECTORS = {
    10.0: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 9.8: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    9.1: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:H", 9.0: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:H/I:H/A:H",
    8.8: "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H", 8.6: "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:C/C:H/I:H/A:H",
    8.3: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:C/C:H/I:H/A:L", 8.2: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:L/A:H",
    8.1: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:H", 7.8: "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
    7.6: "CVSS:3.1/AV:N/AC:H/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.5: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
    7.3: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:L", 7.2: "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H",
    6.5: "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 6.2: "CVSS:3.1/AV:L/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
    6.1: "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 5.9: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H",
    5.6: "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:H/I:H/A:N", 5.5: "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:H",
    5.4: "CVSS:3.1/AV:N/AC:L/PR:L/UI:R/S:C/C:L/I:L/A:N", 5.3: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:N/A:N",
    5.0: "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:L", 4.9: "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:N/A:N",
    4.8: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:L/A:N", 4.4: "CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:H/I:N/A:N",
    4.3: "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:L/A:N", 4.1: "CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:L/I:L/A:N",
    4.0: "CVSS:3.1/AV:L/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 3.7: "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:L/A:N",
    3.3: "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:N/A:N",
}


@dataclass(frozen=True)
class Advisory:
    catalog: str
    id: str
    packages: tuple[str, ...]
    installed: str
    fixed: str | None
    status: str
    severity: str
    cvss: float | None
    published: date
    gate: str
    title: str


# The fixed column may hold spaces ("1.21.11, 1.22.4"); the severity word after it ends it.
_LINE = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+(.+?)\s+(CRITICAL|HIGH|MEDIUM|LOW|UNKNOWN)\s+(\S+)\s+"
                   r"(\d{4}-\d{2}-\d{2})\s+(\S+)\s+(.*)$")


def _parse(name: str, text: str) -> tuple[Advisory, ...]:
    rows = []
    for line in text.strip().splitlines():
        m = _LINE.match(line.strip())
        if not m:
            raise ValueError(f"demo_scans {name}: bad advisory line {line!r}")
        vid, packages, installed, fixed, severity, cvss, published, gate, title = m.groups()
        status = {"-": "affected", "wontfix": "will_not_fix"}.get(fixed, "fixed")
        rows.append(Advisory(name, vid, tuple(packages.split(",")), installed,
                             None if fixed in ("-", "wontfix") else fixed, status, severity,
                             None if cvss == "-" else float(cvss), date.fromisoformat(published), gate, title))
    return tuple(rows)


CATALOGS: dict[str, tuple[Advisory, ...]] = {
    name: _parse(name, text) for name, text in (
        ("DEBIAN", DEBIAN), ("DEBIAN_PYTHON", DEBIAN_PYTHON), ("NODE_BASE", NODE_BASE),
        ("GOLANG_BASE", GOLANG_BASE), ("UBUNTU", UBUNTU), ("ALPINE", ALPINE), ("JAVA", JAVA),
        ("PYTHON", PYTHON), ("ML", ML), ("NODE", NODE), ("GO", GO))
}

# --------------------------------------------------------------------------
# Deployments
# --------------------------------------------------------------------------
# namespace, owner kind, name, image, how to pick it, replicas, flags.
# Image "REPO" is a demo repository; anything with a dot before the first slash, or a
# bare Docker Hub name, is a public image. Picks: tag=T (the pods started two weeks ago:
# they run what T pointed at in the first snapshot), release=N (the N-th newest version
# tag), digest=N / digest-tag=N (release=N pinned as repo@sha256 / repo:tag@sha256),
# digest-of=T (T's current digest, pinned). Flags: image-id (the node reports a bare
# sha256 image ID), succeeded (a finished Job), pending=N (N more pods not yet scheduled),
# init=REPO:PICK (an init container).
DEPLOYMENTS = """
payments     Deployment   api                payments/api               tag=stable      3   init=platform/vault-agent:release=2
payments     Deployment   ledger             payments/ledger            tag=stable      2
payments     Deployment   gateway            payments/gateway-prod      digest-of=prod  3
payments     Deployment   fraud-scorer       payments/fraud-scorer      release=2       2
payments     Deployment   card-vault         payments/card-vault        digest=1        2
payments     Deployment   notifications      payments/notifications     tag=latest      2
payments     Deployment   legacy-billing     payments/legacy-billing    release=0       1
payments     Job          settlement-batch   payments/settlement-batch  release=0       1   succeeded
platform     Deployment   ingress-controller platform/ingress-controller tag=stable     2
platform     Deployment   cert-webhook       platform/cert-webhook      release=1       1
platform     DaemonSet    log-shipper        platform/log-shipper       release=0       4   image-id
platform     Deployment   secrets-operator   platform/secrets-operator  digest=0        1
platform     Deployment   ci-runner          platform/ci-runner         tag=latest      2   pending=1
platform     Deployment   dns-sync           platform/dns-sync          release=0       1
data         Deployment   airflow            data/airflow-dags          release=5       2
data         StatefulSet  kafka-connect      data/kafka-connect         release=3       3
data         StatefulSet  schema-registry    data/schema-registry       release=0       1
data         Deployment   hive-metastore     data/hive-metastore        release=0       1
data         Deployment   dbt-runner         data/dbt-runner            tag=stable      1
data         Job          etl-nightly        data/etl-runner            tag=latest      1   succeeded
data         StatefulSet  postgresql         docker.io/bitnami/postgresql:16.1.0 -      1
web          Deployment   storefront         web/storefront             tag=latest      4
web          Deployment   checkout-ui        web/checkout-ui            tag=stable      3
web          Deployment   bff                web/bff                    release=1       2
web          Deployment   nginx              platform/mirror-nginx      release=0       2
web          Deployment   search-api         web/search-api             release=2       2
web          Deployment   image-resizer      web/image-resizer          digest-tag=0    2
web          Deployment   cms                web/cms                    release=4       1
web          Deployment   old-landing        web/old-landing            tag=latest      1
web          Deployment   redis              redis:7.2.4-alpine         -               1
ml           Deployment   model-server       ml/model-server-prod       digest-of=prod  2
ml           Deployment   embeddings-api     ml/embeddings-api          release=3       2
ml           Deployment   feature-store      ml/feature-store           release=1       1
ml           Job          batch-inference    ml/batch-inference         release=0       1
ml           Deployment   triton             ml/triton-custom           release=0       1
ml           StatefulSet  notebook           ml/notebook                release=2       1
ml           Deployment   ray-worker         ml/ray-worker              release=1       3
monitoring   DaemonSet    node-exporter      quay.io/prometheus/node-exporter:v1.7.0 -  4
monitoring   Deployment   grafana            docker.io/grafana/grafana:10.2.3 -         1
monitoring   StatefulSet  prometheus         quay.io/prometheus/prometheus:v2.48.1@PIN - 1
kube-system  Deployment   coredns            registry.k8s.io/coredns/coredns:v1.11.1 -  2
kube-system  DaemonSet    kube-proxy         registry.k8s.io/kube-proxy:v1.29.2 -       4
ingress-nginx Deployment  controller         registry.k8s.io/ingress-nginx/controller:v1.9.5@PIN - 2
"""

# Public images the platform team scans every night (with what their scans find).
PUBLIC_SCANS = {
    "redis:7.2.4-alpine": ("alpine-3.19", "3.19.1", 450.0, ("ALPINE",), ()),
    "docker.io/grafana/grafana:10.2.3": ("alpine-3.19", "3.19.0", 1000.0, ("ALPINE",), ("GO",)),
}

_FLOATING = {"latest", "stable", "prod", "production", "main", "master", "edge", "nightly", "dev"}
_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _rng(*key: object) -> random.Random:
    # A string seed is hashed with sha512, so streams are stable across runs and processes.
    return random.Random("demo-scans/" + "/".join(map(str, key)))


def _hex(*key: object) -> str:
    return hashlib.sha256("demo-scans/".encode() + "/".join(map(str, key)).encode()).hexdigest()


def _k8s_suffix(length: int, *key: object) -> str:
    rng = _rng("k8s", *key)
    return "".join(rng.choice(_K8S_ALPHABET) for _ in range(length))


def _rfc3339(moment: datetime, *, nanos: int | None = None) -> str:
    moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    if nanos is None:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def _con(db: Any) -> duckdb.DuckDBPyConnection:
    return db.con if hasattr(db, "con") else db


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> list[dict]:
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


# --------------------------------------------------------------------------
# The estate as collected
# --------------------------------------------------------------------------


@dataclass
class _Image:
    """One platform manifest of the demo registry with what decides its findings."""

    digest: str
    config_digest: str
    created: datetime
    architecture: str
    size: int
    base: str | None          # BASES key
    base_age: float           # days between the base release and the last snapshot
    os_name: str
    source: str | None        # repository path the image was built from
    profile: str | None       # PROFILES key of that repository
    generation: int = 0
    generations: int = 1


class _Estate:
    def __init__(self, con: duckdb.DuckDBPyConnection, registry: str):
        self.registry = registry
        latest = _rows(con, "SELECT snapshot_id, started_at FROM latest_snapshot WHERE registry = $r", {"r": registry})
        if not latest:
            raise ValueError(f"no snapshot of {registry} in the database: run the demo collection first")
        self.snapshot_id = latest[0]["snapshot_id"]
        self.now: datetime = latest[0]["started_at"]
        first = _rows(con, "SELECT min(snapshot_id) AS s FROM snapshots WHERE registry = $r "
                           "AND status IN ('complete', 'partial')", {"r": registry})
        self.first_snapshot_id = first[0]["s"]
        self.tags = _rows(con, """
            SELECT t.repository, t.tag, t.digest, m.kind, m.created, m.artifact_type, m.config_digest, m.total_size
            FROM tags t JOIN manifests m ON m.registry = t.registry AND m.digest = t.digest
            WHERE t.snapshot_id = $s ORDER BY t.repository, t.tag""", {"s": self.snapshot_id})
        self.first_tags = {(r["repository"], r["tag"]): r["digest"] for r in _rows(
            con, "SELECT repository, tag, digest FROM tags WHERE snapshot_id = $s", {"s": self.first_snapshot_id})}
        self.children: dict[str, list[dict]] = defaultdict(list)
        for row in _rows(con, "SELECT index_digest, child_digest, architecture, variant FROM manifest_children "
                              "WHERE registry = $r ORDER BY index_digest, position", {"r": registry}):
            self.children[row["index_digest"]].append(row)
        self.images = self._images(con)

    def _images(self, con: duckdb.DuckDBPyConnection) -> dict[str, _Image]:
        as_of = self.now.date()
        base_refs: dict[str, tuple[str, float]] = {}
        for name, base in BASES.items():
            for release, days in enumerate(base.released_days_ago):
                published = as_of - timedelta(days=days)
                ref = base.ref.format(n=base.first + release, date=published.strftime("%Y%m%d"))
                base_refs[ref] = (name, float(days))
        specs = {spec.path: spec for spec in REPO_SPECS}
        layers: dict[str, list[str]] = defaultdict(list)
        for row in _rows(con, "SELECT manifest_digest, digest FROM layers WHERE registry = $r "
                              "ORDER BY manifest_digest, position", {"r": self.registry}):
            layers[row["manifest_digest"]].append(row["digest"])
        images: dict[str, _Image] = {}
        for row in _rows(con, """
                SELECT digest, config_digest, created, architecture, total_size, labels FROM manifests
                WHERE registry = $r AND kind = 'image' AND artifact_type IS NULL AND config_digest IS NOT NULL
                ORDER BY created, digest""", {"r": self.registry}):
            labels = json.loads(row["labels"]) if row["labels"] else {}
            base_ref = labels.get("org.opencontainers.image.base.name", "")
            source_url = labels.get("org.opencontainers.image.source", "")
            source = source_url.split("://", 1)[-1].split("/", 1)[-1] if source_url else None
            spec = specs.get(source) if source else None
            base, age = base_refs.get(base_ref, (spec.base if spec else None, None))
            created = row["created"] or self.now
            if age is None:
                age = max(0.0, (self.now - created).total_seconds() / 86400)
            root = base
            while root is not None and BASES[root].parent:
                root = BASES[root].parent
            family = OS_FAMILY.get(root or "", "debian")
            images[row["digest"]] = _Image(row["digest"], row["config_digest"], created, row["architecture"] or "amd64",
                                           row["total_size"] or 0, base, age, _os_name(family, base_ref, age),
                                           source, spec.base if spec else None)
        # Dependency generations: images of one source and platform whose first application layer
        # is the same byte-identical dependency layer carry the same libraries.
        groups: dict[tuple, list[_Image]] = defaultdict(list)
        for image in images.values():
            if image.source and image.profile:
                groups[(image.source, image.architecture)].append(image)
        for group in groups.values():
            order: dict[str, int] = {}
            for image in group:  # already in created order
                own = layers.get(image.digest, [])
                app = len(PROFILES[image.profile].layers)
                key = own[len(own) - app] if len(own) >= app else image.digest
                image.generation = order.setdefault(key, len(order))
            for image in group:
                image.generations = len(order)
        return images

    def platform_image(self, digest: str) -> _Image | None:
        """The image a scanner reads for ``digest``: itself, or an index's linux/amd64 child."""
        if digest in self.images:
            return self.images[digest]
        for child in self.children.get(digest, []):
            if child["architecture"] == "amd64" and child["child_digest"] in self.images:
                return self.images[child["child_digest"]]
        kids = self.children.get(digest, [])
        return self.images.get(kids[0]["child_digest"]) if kids else None


def _os_name(family: str, base_ref: str, age: float) -> str:
    if family == "alpine":
        match = re.search(r"alpine:(\d+\.\d+\.\d+)", base_ref)
        return match.group(1) if match else "3.19.0"
    if family == "ubuntu":
        return "22.04"
    # Debian 12 point releases, older bases on older ones.
    for threshold, name in ((700, "12.5"), (450, "12.10"), (250, "12.11"), (100, "12.12"), (20, "12.13")):
        if age > threshold:
            return name
    return "12.14"


# --------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------


def _os_findings(catalogs: tuple[str, ...], age: float, scanned: datetime) -> list[Advisory]:
    out = []
    for name in catalogs:
        for adv in CATALOGS[name]:
            if adv.published > scanned.date():
                continue
            if adv.gate == "-" or age > float(adv.gate):
                out.append(adv)
    return out


def _app_findings(catalogs: tuple[str, ...], source: str, generation: int, generations: int,
                  scanned: datetime) -> list[Advisory]:
    out = []
    for name in catalogs:
        for adv in CATALOGS[name]:
            if adv.published > scanned.date():
                continue
            if adv.gate.startswith("only:"):
                if source in adv.gate[5:].split("|"):
                    out.append(adv)
                continue
            rng = _rng("app", source, adv.id)
            if rng.random() >= 0.45:
                continue
            # The generation that upgraded the library: a fraction of the way through the
            # repository's history, or never (fractions above 1) for some.
            fixed_at = rng.uniform(0.15, 1.35) * generations
            if generation < fixed_at:
                out.append(adv)
    return out


def _vulnerability(adv: Advisory, package: str, result_type: str, os_distro: str | None,
                   scanned: datetime) -> dict:
    if result_type in ("debian", "ubuntu", "alpine"):
        purl = f"pkg:{'apk' if result_type == 'alpine' else 'deb'}/{result_type}/{package}@{adv.installed}"
        purl += f"?arch=amd64&distro={os_distro}"
    elif result_type == "jar":
        group, _, artifact = package.partition(":")
        purl = f"pkg:maven/{group}/{artifact}@{adv.installed}"
    elif result_type == "python-pkg":
        purl = f"pkg:pypi/{package}@{adv.installed}"
    elif result_type == "node-pkg":
        purl = f"pkg:npm/{package}@{adv.installed}"
    else:
        purl = f"pkg:golang/{package}@{adv.installed}"
    source = "nvd" if adv.severity != "UNKNOWN" else None
    vuln: dict[str, Any] = {
        "VulnerabilityID": adv.id,
        "PkgID": f"{package}@{adv.installed}",
        "PkgName": package,
        "PkgIdentifier": {"PURL": purl},
        "InstalledVersion": adv.installed,
    }
    if adv.fixed:
        vuln["FixedVersion"] = adv.fixed
    vuln["Status"] = adv.status
    if source:
        vuln["SeveritySource"] = source
    vuln["PrimaryURL"] = (f"https://avd.aquasec.com/nvd/{adv.id.lower()}" if adv.id.startswith("CVE-")
                          else f"https://security-tracker.debian.org/tracker/{adv.id}")
    vuln["DataSource"] = DATA_SOURCES[result_type]
    vuln["Title"] = adv.title
    vuln["Severity"] = adv.severity
    if adv.cvss is not None:
        entry: dict[str, Any] = {"V3Score": adv.cvss}
        if adv.cvss in VECTORS:
            entry = {"V3Vector": VECTORS[adv.cvss], "V3Score": adv.cvss}
        vuln["CVSS"] = {"nvd": entry}
    if adv.id.startswith("CVE-"):
        moment = datetime.combine(adv.published, time(15, 15))
        vuln["PublishedDate"] = _rfc3339(moment)
        vuln["LastModifiedDate"] = _rfc3339(min(moment + timedelta(days=120), scanned))
    return vuln


def _results(artifact: str, os_family: str, os_name: str, os_catalogs: tuple[str, ...], app_catalogs: tuple[str, ...],
             os_advisories: list[Advisory], app_advisories: list[Advisory], scanned: datetime) -> list[dict]:
    distro = f"{os_family}-{os_name}"
    results: list[dict] = []
    # Trivy always writes the OS result, even when clean; language results only when packages were found.
    os_vulns = [_vulnerability(a, p, RESULT_KIND[a.catalog][0], distro, scanned)
                for a in os_advisories if RESULT_KIND[a.catalog][1] == "os-pkgs" for p in a.packages]
    results.append({"Target": f"{artifact} ({os_family} {os_name})", "Class": "os-pkgs", "Type": os_family,
                    **({"Vulnerabilities": os_vulns} if os_vulns else {})})
    lang: dict[tuple[str, str], list[dict]] = {}
    for name in (*os_catalogs, *app_catalogs):
        kind, klass, target = RESULT_KIND[name]
        if klass == "lang-pkgs":
            lang.setdefault((target, kind), [])
    for adv in (*os_advisories, *app_advisories):
        kind, klass, target = RESULT_KIND[adv.catalog]
        if klass == "lang-pkgs":
            lang[(target, kind)].extend(_vulnerability(adv, p, kind, None, scanned) for p in adv.packages)
    for (target, kind), vulns in lang.items():
        results.append({"Target": target, "Class": "lang-pkgs", "Type": kind,
                        **({"Vulnerabilities": vulns} if vulns else {})})
    return results


def _report(*, artifact: str, image_ref: str, repo_digest: str | None, image_id: str, size: int, arch: str,
            os_family: str, os_name: str, results: list[dict], scanned: datetime, with_repo_digest: bool) -> dict:
    metadata: dict[str, Any] = {"Size": size, "OS": {"Family": os_family, "Name": os_name}, "ImageID": image_id,
                                "RepoTags": [image_ref]}
    if with_repo_digest and repo_digest:
        metadata["RepoDigests"] = [repo_digest]
    metadata["ImageConfig"] = {"architecture": arch, "os": "linux"}
    nanos = int(_hex("nanos", artifact, scanned.isoformat())[:8], 16) % 1_000_000_000
    return {
        "SchemaVersion": 2,
        "Trivy": {"Version": TRIVY_VERSION},
        "ReportID": str(_uuid(artifact, scanned)),
        "CreatedAt": _rfc3339(scanned, nanos=nanos),
        "ArtifactName": artifact,
        "ArtifactType": "container_image",
        "Metadata": metadata,
        "Results": results,
    }


def _uuid(*key: object) -> str:
    h = _hex("uuid", *key)
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-a{h[17:20]}-{h[20:32]}"


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


def _tag_for(tags: list[str]) -> str:
    fixed = sorted(t for t in tags if t not in _FLOATING)
    return fixed[-1] if fixed else sorted(tags)[0]


def _image_report(estate: _Estate, repository: str, tag: str, digest: str, scanned: datetime) -> dict | None:
    image = estate.platform_image(digest)
    if image is None:
        return None
    artifact = f"{estate.registry}/{repository}:{tag}"
    family = OS_FAMILY.get(_root(image.base), "debian")
    os_catalogs = OS_CATALOGS.get(image.base or "", ())
    app_catalogs = APP_CATALOGS.get(image.profile or "", ())
    os_adv = _os_findings(os_catalogs, image.base_age, scanned)
    app_adv = _app_findings(app_catalogs, image.source or repository, image.generation, image.generations, scanned)
    results = _results(artifact, family, image.os_name, os_catalogs, app_catalogs, os_adv, app_adv, scanned)
    # Most scans come from the registry's scanner, which names the platform manifest it
    # pulled; one in eight from a CI job scanning a saved image, which knows only its ID.
    with_digest = int(_hex("via", repository, digest)[:4], 16) % 8 != 0
    return _report(artifact=artifact, image_ref=artifact, repo_digest=f"{estate.registry}/{repository}@{image.digest}",
                   image_id=image.config_digest, size=image.size, arch=image.architecture, os_family=family,
                   os_name=image.os_name, results=results, scanned=scanned, with_repo_digest=with_digest)


def _root(base: str | None) -> str:
    while base is not None and BASES[base].parent:
        base = BASES[base].parent
    return base or ""


def _write(path: Path, document: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


@dataclass
class _Pick:
    repository: str
    spec_image: str          # as written in the pod spec
    digest: str              # what the pods run
    tag: str | None


def _versions(estate: _Estate, repository: str) -> list[dict]:
    rows = [r for r in estate.tags if r["repository"] == repository and r["artifact_type"] is None
            and r["tag"] not in _FLOATING and not r["tag"].endswith(".sig")]
    return sorted(rows, key=lambda r: (r["created"], r["tag"]), reverse=True)


def _pick(estate: _Estate, repository: str, how: str) -> _Pick | None:
    mode, _, arg = how.partition("=")
    current = {r["tag"]: r["digest"] for r in estate.tags if r["repository"] == repository}
    if not current:
        return None
    host = f"{estate.registry}/{repository}"
    if mode == "tag":
        tag = arg if arg in current else ("latest" if "latest" in current else None)
        if tag is None:
            return _pick(estate, repository, "release=0")
        digest = estate.first_tags.get((repository, tag), current[tag])
        return _Pick(repository, f"{host}:{tag}", digest, tag)
    if mode == "digest-of":
        if arg not in current:
            return _pick(estate, repository, "digest=0")
        return _Pick(repository, f"{host}@{current[arg]}", current[arg], None)
    versions = _versions(estate, repository)
    if not versions:
        return _pick(estate, repository, "tag=latest") if "latest" in current else None
    row = versions[min(int(arg or 0), len(versions) - 1)]
    if mode == "release":
        return _Pick(repository, f"{host}:{row['tag']}", row["digest"], row["tag"])
    if mode == "digest":
        return _Pick(repository, f"{host}@{row['digest']}", row["digest"], None)
    if mode == "digest-tag":
        return _Pick(repository, f"{host}:{row['tag']}@{row['digest']}", row["digest"], row["tag"])
    raise ValueError(f"demo_scans: unknown pick {how!r}")


def _public_digest(image: str) -> str:
    return "sha256:" + _hex("public", image.split("@")[0])


def _public_image_id(image: str) -> str:
    return "sha256:" + _hex("public-config", image.split("@")[0])


def _status_repo(image: str) -> str:
    """containerd's imageID spelling: docker.io/library/redis for a bare redis."""
    name = image.split("@")[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":")[0]
    first = name.split("/", 1)[0]
    if "." not in first and ":" not in first:
        name = f"docker.io/{name}" if "/" in name else f"docker.io/library/{name}"
    return name


def _pod(*, namespace: str, kind: str, owner: str, name: str, pod_name: str, containers: list[dict],
         init: list[dict], node: str | None, phase: str, started: datetime | None, uid_key: str) -> dict:
    owner_kind = "ReplicaSet" if kind == "Deployment" else kind
    owner_name = f"{owner}-{_k8s_suffix(10, namespace, owner)}" if kind == "Deployment" else owner
    metadata: dict[str, Any] = {
        "creationTimestamp": _rfc3339(started) if started else None,
        "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": namespace},
        "name": pod_name,
        "namespace": namespace,
        "ownerReferences": [{"apiVersion": "batch/v1" if kind == "Job" else "apps/v1", "blockOwnerDeletion": True,
                             "controller": True, "kind": owner_kind, "name": owner_name,
                             "uid": _uuid("owner", namespace, owner)}],
        "resourceVersion": str(int(_hex("rv", uid_key)[:6], 16)),
        "uid": _uuid("pod", uid_key),
    }
    spec: dict[str, Any] = {
        "containers": [{"image": c["image"], "imagePullPolicy": "IfNotPresent", "name": c["name"],
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}}} for c in containers],
        "restartPolicy": "Never" if kind == "Job" else "Always",
        "serviceAccountName": name,
    }
    if init:
        spec["initContainers"] = [{"image": c["image"], "imagePullPolicy": "IfNotPresent", "name": c["name"]}
                                  for c in init]
    if node:
        spec["nodeName"] = node
    status: dict[str, Any] = {"phase": phase, "qosClass": "Burstable"}
    if phase == "Pending":
        status["conditions"] = [{"lastTransitionTime": _rfc3339(started) if started else None,
                                 "message": "0/4 nodes are available: 4 Insufficient cpu.",
                                 "reason": "Unschedulable", "status": "False", "type": "PodScheduled"}]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}
    status["hostIP"] = f"10.0.0.{2 + CLUSTER_NODES.index(node)}" if node in CLUSTER_NODES else "10.0.0.2"
    status["podIP"] = f"10.244.{int(_hex('ip', uid_key)[:2], 16) % 4}.{int(_hex('ip', uid_key)[2:4], 16)}"
    status["startTime"] = _rfc3339(started)

    def container_status(c: dict, terminated: bool) -> dict:
        state = ({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": _rfc3339(started),
                                 "finishedAt": _rfc3339(started + timedelta(minutes=7))}}
                 if terminated else {"running": {"startedAt": _rfc3339(started + timedelta(seconds=20))}})
        return {"containerID": "containerd://" + _hex("cid", uid_key, c["name"]), "image": c["status_image"],
                "imageID": c["image_id"], "lastState": {}, "name": c["name"], "ready": not terminated,
                "restartCount": 0, "started": not terminated, "state": state}

    if init:
        status["initContainerStatuses"] = [container_status(c, True) for c in init]
    status["containerStatuses"] = [container_status(c, phase == "Succeeded") for c in containers]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def _container(estate: _Estate, name: str, image: str, how: str, *, image_id_only: bool = False
               ) -> tuple[dict, _Pick | None] | None:
    """A container for ``image`` (a demo repository or a public image) and what it runs."""
    first = image.split("/", 1)[0]
    if "." in first or ":" in first or "/" not in image:
        # A public image: digests are made up, as the demo holds nothing from those registries.
        digest = _public_digest(image)
        spec_image = image.replace("@PIN", f"@{digest}")
        status_image = spec_image.split("@")[0]
        return ({"name": name, "image": spec_image, "status_image": status_image,
                 "image_id": f"{_status_repo(image)}@{digest}"}, None)
    pick = _pick(estate, image, how)
    if pick is None:
        return None
    if image_id_only:
        platform = estate.platform_image(pick.digest)
        image_id = platform.config_digest if platform else pick.digest
    else:
        image_id = f"{estate.registry}/{pick.repository}@{pick.digest}"
    return ({"name": name, "image": pick.spec_image, "status_image": pick.spec_image, "image_id": image_id}, pick)


def _pods(estate: _Estate) -> tuple[list[dict], list[_Pick]]:
    pods: list[dict] = []
    picks: list[_Pick] = []
    for line in DEPLOYMENTS.strip().splitlines():
        namespace, kind, name, image, how, replicas, *flags = line.split()
        options = dict(f.partition("=")[::2] for f in flags)
        made = _container(estate, name, image, how, image_id_only="image-id" in options)
        if made is None:
            continue
        container, pick = made
        if pick:
            picks.append(pick)
        init = []
        if "init" in options:
            repo, _, init_how = options["init"].partition(":")
            made_init = _container(estate, f"{repo.rsplit('/', 1)[-1]}-init", repo, init_how)
            if made_init:
                init = [made_init[0]]
                if made_init[1]:
                    picks.append(made_init[1])
        rng = _rng("deploy", namespace, name)
        # Pods started when their tag was resolved: two weeks ago for tag=…, hours ago otherwise.
        days_ago = 14 if how.startswith("tag=") else rng.uniform(0.2, 6)
        started = estate.now - timedelta(days=days_ago, minutes=rng.randrange(600))
        phase = "Succeeded" if "succeeded" in options else "Running"
        count = int(replicas)
        nodes = list(CLUSTER_NODES) if kind == "DaemonSet" else [rng.choice(CLUSTER_NODES) for _ in range(count)]
        for i in range(count + int(options.get("pending", 0))):
            pending = i >= count
            if kind == "StatefulSet":
                pod_name = f"{name}-{i}"
            elif kind == "Job":
                pod_name = f"{name}-{int(estate.now.timestamp()) // 60 - i}-{_k8s_suffix(5, namespace, name, i)}"
            elif kind == "DaemonSet":
                pod_name = f"{name}-{_k8s_suffix(5, namespace, name, i)}"
            else:
                pod_name = f"{name}-{_k8s_suffix(10, namespace, name)}-{_k8s_suffix(5, namespace, name, i)}"
            pods.append(_pod(namespace=namespace, kind=kind, owner=name, name=name, pod_name=pod_name,
                             containers=[container], init=init, node=None if pending else nodes[i % len(nodes)],
                             phase="Pending" if pending else phase,
                             started=estate.now - timedelta(minutes=3) if pending else started,
                             uid_key=f"{namespace}/{pod_name}"))
    pods.sort(key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]))
    return pods, picks


def write_demo_scans(db: Any, out_dir: str | Path, *, registry: str = REGISTRY) -> tuple[list[Path], Path]:
    """Write Trivy reports for most demo images and a pod listing that deploys some of them.

    ``db`` is an :class:`~repoaudit.audit.Audit` or a DuckDB connection holding the collected
    demo estate. Returns ``(report_paths, pods_path)``: ingest them with
    ``audit.ingest("trivy", report_paths)`` and ``audit.ingest("pods", pods_path, cluster="demo")``.
    The output depends only on the database, so the same estate always gives the same files.
    ``out_dir/trivy/`` is this function's own output and is replaced on every call.
    """
    con = _con(db)
    estate = _Estate(con, registry)
    out = Path(out_dir)
    trivy_dir = out / "trivy"
    if trivy_dir.is_dir():
        # Reports of an earlier run (another as_of) would otherwise linger beside the new ones.
        shutil.rmtree(trivy_dir)
    pods, picks = _pods(estate)
    reports: list[Path] = []
    cutoff = estate.now - timedelta(days=SCAN_ON_PUSH_DAYS)

    by_image: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in estate.tags:
        if row["artifact_type"] is None and row["kind"] in ("image", "index") and not row["tag"].endswith(".sig"):
            by_image[(row["repository"], row["digest"])].append(row["tag"])
    created = {row["digest"]: row["created"] for row in estate.tags}

    # Scan on push.
    for (repository, digest), tags in sorted(by_image.items()):
        when = created.get(digest)
        if repository in SKIPPED_REPOSITORIES or when is None or when < cutoff:
            continue
        if int(_hex("failed", repository, digest)[:6], 16) % 30 == 0:
            continue  # the scanner timed out on this push
        scanned = when + timedelta(minutes=3 + int(_hex("lag", repository, digest)[:4], 16) % 40)
        if scanned > estate.now:
            scanned = estate.now - timedelta(minutes=1)
        tag = _tag_for(tags)
        report = _image_report(estate, repository, tag, digest, scanned)
        if report is not None:
            reports.append(_write(trivy_dir / repository / f"{_safe(tag)}-{scanned:%Y%m%dT%H%M}.json", report))

    # Nightly rescan of what runs in the opted-in namespaces.
    nightly = estate.now.replace(hour=1, minute=0, second=0, microsecond=0)
    if nightly >= estate.now:
        nightly -= timedelta(days=1)
    deployed: dict[tuple[str, str], str] = {}
    for pod in pods:
        if pod["metadata"]["namespace"] not in NIGHTLY_RESCAN:
            continue
        for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            for pick in picks:
                if pick.spec_image == container["image"]:
                    deployed.setdefault((pick.repository, pick.digest), pick.tag or _tag_for(
                        by_image.get((pick.repository, pick.digest), ["untagged"])))
    for i, ((repository, digest), tag) in enumerate(sorted(deployed.items())):
        if repository in SKIPPED_REPOSITORIES:
            continue
        scanned = nightly + timedelta(minutes=2 * i, seconds=17)
        report = _image_report(estate, repository, tag, digest, scanned)
        if report is not None:
            reports.append(_write(trivy_dir / repository / f"{_safe(tag)}-nightly-{scanned:%Y%m%dT%H%M}.json", report))

    # The platform team's nightly scan of public images it has not mirrored yet.
    for j, (image, (base, os_name, age, os_catalogs, app_catalogs)) in enumerate(sorted(PUBLIC_SCANS.items())):
        scanned = nightly + timedelta(minutes=90 + j, seconds=3)
        digest = _public_digest(image)
        repo = _status_repo(image)
        os_adv = _os_findings(os_catalogs, age, scanned)
        app_adv = _app_findings(app_catalogs, repo, 0, 1, scanned)
        family = OS_FAMILY[base]
        results = _results(image, family, os_name, os_catalogs, app_catalogs, os_adv, app_adv, scanned)
        report = _report(artifact=image, image_ref=image, repo_digest=f"{repo}@{digest}",
                         image_id=_public_image_id(image), size=0, arch="amd64", os_family=family, os_name=os_name,
                         results=results, scanned=scanned, with_repo_digest=True)
        reports.append(_write(trivy_dir / "public" / f"{_safe(image)}-{scanned:%Y%m%dT%H%M}.json", report))

    pods_path = _write(out / "pods.json", {"apiVersion": "v1", "items": pods, "kind": "List",
                                            "metadata": {"resourceVersion": ""}})
    return reports, pods_path
