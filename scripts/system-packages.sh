#!/usr/bin/env bash
# The real software the tests drive, from Debian: Chromium (the viewer test), Orthanc with its DICOMweb
# plugin (the PACS the DICOM node is tested against), dcmtk (storescu/echoscu, an independent sender)
# and dicom3tools (dciodvfy). Installed when missing and this runs as root with apt; otherwise it prints
# the one command that installs them (the tests that need them skip, each saying why).
# policy-rc.d keeps apt from starting Orthanc as a system service: the tests start their own.
set -uo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v storescu >/dev/null 2>&1 || need+=(dcmtk)
command -v dciodvfy >/dev/null 2>&1 || need+=(dicom3tools)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if [ -w /usr/sbin ] && [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d; fi
  echo "installing ${need[*]} (Debian packages the tests drive; log: /tmp/pneumoscope-apt.log)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/tmp/pneumoscope-apt.log 2>&1 \
    || echo "could not install ${need[*]} (see /tmp/pneumoscope-apt.log); the tests that need them will skip and say why"
else
  echo "missing ${need[*]}: the tests that need them will skip. To run them too: sudo apt-get install ${need[*]}"
fi
exit 0
