FROM alpine
COPY --chmod=999 a /
COPY --chmod=u+q a /
COPY --chown=:g a /
COPY --chown=app --link a /
COPY https://example.test/f /f
ADD --checksum=sha256:abc https://example.test/f /f
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d local /f
COPY --exclude=[ a /
RUN --mount=type=bogus,target=/x true
RUN --mount=type=cache true
