#!/usr/bin/env bash
# Builds the Java client example of examples/java/ with Maven (downloads cached in ~/.m2) into
# target/clients/java/: lib/ holds the example's jar and its runtime dependencies, agent/ the
# OpenTelemetry Java agent, and java links to the JVM that built them; run a program as
# `target/clients/java/java -cp 'target/clients/java/lib/*' dev.jobtrace.examples.Creator ...`.
# Nothing to do while the pom, the sources and the JVM are those of the last build.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/clients/java
java=$(readlink -f "$(command -v "${JAVA_HOME:+$JAVA_HOME/bin/}java")")
stamp=$({
  echo "$java"
  find examples/java/pom.xml examples/java/src -type f -print0 | sort -z | xargs -0 sha256sum
} | sha256sum)
if [[ -f $out/stamp && $(<"$out/stamp") == "$stamp" ]]; then
  exit 0
fi
rm -rf "$out"
mvn -q -B -f examples/java/pom.xml clean package
mkdir -p "$out"
cp -r examples/java/target/lib examples/java/target/agent "$out/"
cp examples/java/target/*.jar "$out/lib/"
ln -s "$java" "$out/java"
echo "$stamp" >"$out/stamp"
