# waitroom service image: Node 20, production dependencies only.
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY migrations ./migrations
COPY sql ./sql
COPY src ./src
COPY web ./web
COPY bin ./bin
COPY tsconfig.json ./
USER node
EXPOSE 8080
CMD ["node", "--import", "tsx", "src/main.ts", "start"]
