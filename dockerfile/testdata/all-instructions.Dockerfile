FROM alpine
ARG A B=2
ENV E=1 F="two words"
LABEL l1=a "l 2"=b
MAINTAINER someone <a@b>
EXPOSE 80 53/udp ${PORT}
VOLUME ["/data", "/logs"]
VOLUME /plain
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=2s --start-period=1s --start-interval=1s --retries=3 CMD curl -f http://localhost/
HEALTHCHECK NONE
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]
USER 1000:1000
WORKDIR /app
COPY --chown=1:2 --chmod=0640 --link a b /dst/
ADD --chmod=u+x,go-w --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.test/f.tar /f.tar
COPY --parents --exclude=*.md ./x/./y /z/
COPY <<EOF /inline.txt
hello $E
EOF
COPY <<"EOF" /quoted.txt
no $E
EOF
RUN --mount=type=cache,target=/root/.cache,id=c1,sharing=locked,mode=0700,uid=1,gid=2 --mount=type=secret,id=tok,env=TOKEN --mount=type=tmpfs,target=/t,size=10m --network=none true
CMD ["app"]
ENTRYPOINT exec app
ONBUILD RUN echo triggered
