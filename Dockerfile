# The berth container image: the static binary and nothing else.
#
# Build the binary first, then the image, from the repository's root (no base
# image is pulled):
#
#   CGO_ENABLED=0 go build -trimpath -ldflags=-s -o deploy/image/berth ./cmd/berth
#   docker build -t berth deploy/image -f Dockerfile
#
# It runs as an unprivileged user (65532) with its data under /data: a
# volume for the embedded defaults (SQLite and the filesystem); with
# BERTH_DATABASE and BERTH_STORAGE set, nodes keep nothing there that
# matters.
FROM scratch
COPY --chown=65532:65532 data/ /data/
COPY berth /berth
USER 65532:65532
ENV BERTH_DATA=/data BERTH_ADDR=:5000
EXPOSE 5000
VOLUME /data
ENTRYPOINT ["/berth"]
CMD ["serve"]
