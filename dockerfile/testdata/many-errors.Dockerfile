FROM alpine
COPY a b
FOO
ENV
RUN --mount=x true
USER me
