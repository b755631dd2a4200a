# An image of Hearth FROM scratch, from a binary built on the host (no
# image can be pulled here, and none is needed):
#
#   CGO_ENABLED=0 go build -o hearth . && docker build -t hearth .
#
# For Complement, build with --build-arg COMPLEMENT=1: the server then takes
# SERVER_NAME from the environment, registers openly, accepts the shared
# secret "complement" and has no rate limits. Never run that image for real.
FROM scratch
ARG COMPLEMENT=0
COPY hearth /hearth
# WORKDIR creates the directories: /tmp for Go's temporary files, /data
# for the database and keys (kept across container restarts).
WORKDIR /tmp
WORKDIR /data
ENV HEARTH_DATA=/data HEARTH_HTTP=0.0.0.0:8008 HEARTH_COMPLEMENT=${COMPLEMENT}
EXPOSE 8008
EXPOSE 8448
STOPSIGNAL SIGTERM
ENTRYPOINT ["/hearth", "serve"]
