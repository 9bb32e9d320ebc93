# A!h
${meS{m8€{ b i# 